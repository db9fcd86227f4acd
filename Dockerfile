# The tally app image: a static binary on an empty base.
# GO_IMAGE is the builder; hosts that cannot pull it build a local one with
# `make offline-images`.
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS build
# The module and build caches live in BuildKit cache mounts, kept between
# builds on the same host: a change to the app recompiles the app, not its
# dependencies. They are not in any layer, and -trimpath keeps the binary
# the same whether the cache was warm or cold.
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOMODCACHE=/cache/mod GOCACHE=/cache/build
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY app/go.mod app/go.sum ./
RUN --mount=type=cache,id=tally-gomod,target=/cache/mod go mod download
COPY app/ ./
ARG VERSION=dev
RUN --mount=type=cache,id=tally-gomod,target=/cache/mod --mount=type=cache,id=tally-gobuild,target=/cache/build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tally ./cmd/tally

FROM scratch
COPY --from=build /out/tally /tally
# Any non-root id works: the binary reads nothing and writes only to stdout.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/tally", "healthcheck"]
ENTRYPOINT ["/tally"]
