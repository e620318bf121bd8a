# mqimg: camera frames over MQTT → validated images and JSON records.
#
#   docker build -t mqimg .
#   docker run --rm -v $PWD/frames:/data/frames -e MQIMG__BROKER__URL=mqtt://mosquitto:1883 mqimg
#
# The image runs `mqimg run -c /etc/mqimg/mqimg.toml`; override any key with MQIMG__SECTION__KEY.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY benches ./benches
RUN cargo build --release --locked --bin mqimg

FROM debian:bookworm-slim
RUN useradd --system --home /data --create-home mqimg
COPY --from=build /src/target/release/mqimg /usr/local/bin/mqimg
COPY config/mqimg.toml /etc/mqimg/mqimg.toml
USER mqimg
WORKDIR /data
ENV MQIMG__OUTPUT__DIR=/data/frames
VOLUME ["/data/frames"]
ENTRYPOINT ["mqimg"]
CMD ["run", "-c", "/etc/mqimg/mqimg.toml"]
