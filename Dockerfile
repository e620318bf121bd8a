# mqimg: camera frames over MQTT → validated images and JSON records.
#
#   docker build -t mqimg .
#   docker run --rm -v mqimg-frames:/frames -e MQIMG__BROKER__URL=mqtt://BROKER:1883 mqimg
#
# Needs BuildKit (RUN --mount): Docker 23 or later, docker buildx, or DOCKER_BUILDKIT=1 on Docker 20.10.
# The image runs `mqimg run -c /etc/mqimg/mqimg.toml` as uid/gid 10001 (user mqimg), stores frames in
# /frames (owned by 10001, so a named volume starts out writable; chown a bind-mounted folder to 10001 or
# run with --user UID:GID), and serves its HTTP listener (live view, /metrics, /healthz, /readyz) on
# 0.0.0.0:9464: set MQIMG__HTTP__TOKEN when that port is reachable by others. Any key can be overridden
# as MQIMG__SECTION__KEY. See the README's Deploy section.
#
# Build arguments:
#   BUILD_IMAGE    the Rust image the binary is compiled in (glibc no newer than RUNTIME_IMAGE's)
#   RUNTIME_IMAGE  the Debian-based image the binary runs in (the final stage runs apt-get and useradd)
#   BINARY         `compile` (default): cargo build --release inside BUILD_IMAGE;
#                  `prebuilt`: copy target/release/mqimg, built on the host beforehand with
#                  `cargo build --release --locked --features turbojpeg` (a Debian 12 / glibc 2.36 host);
#                  BUILD_IMAGE is not used
#   FEATURES       cargo features of the binary: `turbojpeg` (default: libjpeg-turbo, built from source
#                  with cmake and nasm, decodes the JPEGs); empty for the pure-Rust build
#   DECODE_BACKEND decode.backend the image runs with: `libjpeg-turbo` (default; needs FEATURES=turbojpeg)
#                  or `zune`. Measured (README, JPEG backends): libjpeg-turbo drains 1080p frames 19 % and
#                  720p 11 % faster on 2 cores, and its own warnings add detection in progressive scans.
# Behind a TLS-intercepting proxy, give cargo its CA certificates (PEM) for the compile stage only:
#   docker build --secret id=extra_ca,src=proxy-ca.pem -t mqimg .
# They are read from a secret mount, never written to a layer, and the final image does not carry them.

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY=compile
ARG FEATURES=turbojpeg
ARG DECODE_BACKEND=libjpeg-turbo

FROM ${BUILD_IMAGE} AS binary-compile
ARG FEATURES
# libjpeg-turbo's build (turbojpeg-sys): cmake, make and nasm, when the feature is asked for.
RUN set -eu; \
    if [ -n "$FEATURES" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake make nasm; \
        rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY config ./config
COPY src ./src
# The registry and target folders are BuildKit cache mounts: a rebuild after a source change compiles
# mqimg alone, not its dependencies. The binary is copied out of the cache before the step ends, without
# the line tables the release profile keeps (46 MB → 7 MB when measured; symbols stay, so backtraces
# name functions).
RUN --mount=type=secret,id=extra_ca \
    --mount=type=tmpfs,target=/run/ca \
    --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    if [ -s /run/secrets/extra_ca ]; then \
        cat /etc/ssl/certs/ca-certificates.crt /run/secrets/extra_ca > /run/ca/bundle.pem; \
        export CARGO_HTTP_CAINFO=/run/ca/bundle.pem; \
    fi; \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin mqimg \
        ${FEATURES:+--features "$FEATURES"}; \
    cp target/release/mqimg /mqimg

FROM scratch AS binary-prebuilt
COPY target/release/mqimg /mqimg

FROM binary-${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
ARG DECODE_BACKEND
# ca-certificates: the system roots, for brokers behind TLS with a public certificate.
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    groupadd --gid 10001 mqimg; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mqimg; \
    install -d -o 10001 -g 10001 -m 0755 /frames
COPY --from=binary /mqimg /usr/local/bin/mqimg
COPY config/mqimg.toml /etc/mqimg/mqimg.toml
ENV MQIMG__OUTPUT__DIR=/frames \
    MQIMG__HTTP__LISTEN=0.0.0.0:9464 \
    MQIMG__DECODE__BACKEND=${DECODE_BACKEND}
USER 10001:10001
VOLUME ["/frames"]
EXPOSE 9464
# `mqimg health` probes /readyz of the listener the config names: healthy once connected and
# subscribed with storage working. mqimg needs up to pipeline.shutdown_grace_secs (10 s) to stop:
# give `docker stop` a longer timeout (-t 15; compose: stop_grace_period).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mqimg", "health", "-c", "/etc/mqimg/mqimg.toml"]
ENTRYPOINT ["mqimg"]
CMD ["run", "-c", "/etc/mqimg/mqimg.toml"]
