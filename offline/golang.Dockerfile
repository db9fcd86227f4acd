# Stand-in for the official golang:1.26 builder image.
ARG BASE
FROM ${BASE}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN apt-get -o Acquire::Check-Valid-Until=false update \
 && apt-get install -y --no-install-recommends golang-1.26-go \
 && rm -rf /var/lib/apt/lists/*
ENV GOPATH=/go GOTOOLCHAIN=local PATH=/go/bin:/usr/lib/go-1.26/bin:$PATH
WORKDIR /go
