# Stand-in for the official nginx:1.30 image: nginx on PATH, user nginx with
# uid/gid 101, logs to the container's stdout and stderr.
ARG BASE
FROM ${BASE}
RUN groupadd -r -g 101 nginx && useradd -r -g nginx -u 101 -d /nonexistent -s /usr/sbin/nologin nginx \
 && apt-get -o Acquire::Check-Valid-Until=false update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
