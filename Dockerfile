# The tally app image: a static binary on an empty base.
# GO_IMAGE is the builder; hosts that cannot pull it build a local one with
# `make offline-images`.
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY app/go.mod app/go.sum ./
RUN go mod download
COPY app/ ./
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tally ./cmd/tally

FROM scratch
COPY --from=build /out/tally /tally
# Any non-root id works: the binary reads nothing and writes only to stdout.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/tally", "healthcheck"]
ENTRYPOINT ["/tally"]
