# revd in a container: built on Debian 12, run on debian:bookworm-slim as a non-root user.
#   docker build -t revd .
#   docker run -v /etc/revd:/etc/revd:ro -p 8080:8080 revd
# The configuration is /etc/revd/revd.conf; REVD_CONF_<SECTION>_<KEY> variables override it.

FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libssl-dev libuv1-dev node-llhttp libinih-dev \
      libpq-dev libhiredis-dev libsystemd-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake ./cmake
COPY sql ./sql
COPY src ./src
COPY man ./man
# The tests are not built here: `make test` runs them on a build machine.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DREVD_TESTS=OFF -DREVD_WERROR=ON \
 && cmake --build /build -j "$(nproc)" \
 && cmake --install /build --prefix /usr/local --strip

FROM debian:bookworm-slim
# Run-time libraries only; the migrations are inside the binary.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libssl3 libuv1 libinih1 libpq5 libhiredis0.14 libsystemd0 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system revd \
 && useradd --system --gid revd --home-dir /var/lib/revd --create-home \
      --shell /usr/sbin/nologin revd
COPY --from=build /usr/local/bin/revd /usr/local/bin/revd
COPY --from=build /usr/local/share/man/man1/revd.1 /usr/local/share/man/man1/revd.1
USER revd:revd
WORKDIR /var/lib/revd
# CRL state for index.txt issuers ([crl] dir) lives here.
VOLUME ["/var/lib/revd"]
EXPOSE 8080
# Listens on every address inside the container unless the configuration says otherwise.
ENV REVD_CONF_SERVER_LISTEN=0.0.0.0:8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/revd", "healthcheck", "--address", "127.0.0.1:8080"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/revd"]
CMD ["serve", "--config", "/etc/revd/revd.conf"]
