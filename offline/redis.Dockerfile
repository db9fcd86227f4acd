# Stand-in for the official redis:8.0 image: redis-server on PATH, user
# redis with uid/gid 999, data in /data.
ARG BASE
FROM ${BASE}
RUN groupadd -r -g 999 redis && useradd -r -g redis -u 999 -d /data redis \
 && apt-get -o Acquire::Check-Valid-Until=false update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
VOLUME /data
EXPOSE 6379
CMD ["redis-server"]
