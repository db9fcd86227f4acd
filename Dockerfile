# The tally app image: a static binary on an empty base.
# GO_IMAGE is the builder; hosts that cannot pull it build a local one with
# `make offline-images`.
#
# It builds the same with BuildKit (Compose v2, pulumi-docker) and with the
# classic builder (Compose v1, `DOCKER_BUILDKIT=0 docker build`), and a
# change to the app recompiles the app only: the dependencies are compiled
# in a layer of their own, rebuilt only when go.sum or the list of packages
# the app imports changes. -trimpath (in GOFLAGS, so both builds share the
# compiled packages) keeps the binary the same whether that layer was there
# or not.
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS modules
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-trimpath
WORKDIR /src
COPY app/go.mod app/go.sum ./
RUN go mod download

# What the app imports from other modules, one package a line.
FROM modules AS imports
COPY app/ ./
RUN go list -deps -f '{{with .Module}}{{if not .Main}}{{$.ImportPath}}{{end}}{{end}}' ./cmd/tally > /imports

# Compiled into the build cache of this layer, which the builder keeps as
# long as /imports and go.sum read the same.
FROM modules AS deps
COPY --from=imports /imports /imports
RUN xargs go build < /imports

FROM deps AS build
COPY app/ ./
ARG VERSION=dev
RUN go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/tally ./cmd/tally

# tally-certs (certs/): the local CA and certificate of a local run
# (docker-compose.yml's certs service), a deployed stack's by ACME (the
# Pulumi program's), in an image of its own (--target certs). Its
# directories are the nginx user's (101), the owner the volumes mounted on
# them take: nginx, as that user, reads the certificate and its key.
FROM ${GO_IMAGE} AS certs-build
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-trimpath
WORKDIR /src
COPY certs/go.mod certs/go.sum ./
RUN go mod download
COPY certs/ ./
RUN go build -ldflags "-s -w" -o /out/tally-certs ./cmd/tally-certs \
	&& mkdir -p /out/lib/tls /out/lib/ca /out/lib/acme && chmod 0700 /out/lib/ca /out/lib/acme

FROM scratch AS certs
COPY --from=certs-build /out/tally-certs /tally-certs
COPY --from=certs-build --chown=101:101 /out/lib/ /var/lib/tally/
USER 101:101
ENTRYPOINT ["/tally-certs"]

# The app, the default target.
FROM scratch
COPY --from=build /out/tally /tally
# Any non-root id works: the binary reads nothing and writes only to stdout.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/tally", "healthcheck"]
ENTRYPOINT ["/tally"]
