# Milliwatt images: one per service.
#   docker build --target media     -t milliwatt/media .
#   docker build --target signaling -t milliwatt/signaling .
# The dependency layer is built from the manifests alone, so a change to our sources rebuilds
# only our crates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
COPY common/Cargo.toml common/
COPY proto/Cargo.toml proto/build.rs proto/
COPY proto/proto proto/proto
COPY media/Cargo.toml media/
COPY media/core/Cargo.toml media/core/
COPY signaling/Cargo.toml signaling/
COPY signaling/core/Cargo.toml signaling/core/
COPY ctl/Cargo.toml ctl/
RUN mkdir -p src common/src proto/src media/src media/core/src signaling/src signaling/core/src ctl/src \
    && echo 'fn main() {}' > src/main.rs \
    && for c in common proto media media/core signaling signaling/core ctl; do : > "$c/src/lib.rs"; done \
    && echo 'fn main() {}' > ctl/src/main.rs \
    && echo 'fn main() {}' > media/src/main.rs \
    && echo 'fn main() {}' > signaling/src/main.rs \
    && touch config.toml \
    && cargo build --release --locked -p milliwatt-media -p milliwatt-signaling \
    && rm -rf src common/src proto/src media/src media/core/src signaling/src signaling/core/src ctl/src
COPY . .
# Newer than the stub build, whatever the build context's timestamps.
RUN find common proto media signaling ctl src -name '*.rs' -exec touch {} + && touch config.toml \
    && cargo build --release --locked -p milliwatt-media -p milliwatt-signaling

FROM debian:bookworm-slim AS runtime
COPY config.toml /etc/milliwatt/config.toml
# No shell or tools are needed at run time; the binaries check their own health.
USER 10001:10001
EXPOSE 8080/tcp

FROM runtime AS media
COPY --from=builder /build/target/release/milliwatt-media /usr/local/bin/milliwatt-media
# Container defaults: gRPC for other containers. The RTP address advertised in SDP is the
# container's own unless MILLIWATT_MEDIA__ADVERTISED_ADDRESS says otherwise.
ENV MILLIWATT_MEDIA__GRPC_LISTEN=0.0.0.0:50051
EXPOSE 50051/tcp 10000-20000/udp
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/milliwatt-media", "--config", "/etc/milliwatt/config.toml", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/milliwatt-media", "--config", "/etc/milliwatt/config.toml"]

FROM runtime AS signaling
COPY --from=builder /build/target/release/milliwatt-signaling /usr/local/bin/milliwatt-signaling
ENV MILLIWATT_MEDIA__ENDPOINT=http://media:50051
EXPOSE 5060/udp 5060/tcp
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/milliwatt-signaling", "--config", "/etc/milliwatt/config.toml", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/milliwatt-signaling", "--config", "/etc/milliwatt/config.toml"]
