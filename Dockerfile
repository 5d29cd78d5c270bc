# syntax=docker/dockerfile:1
# One image for every role: the operator Deployment and the cache pods both run `mapcache`.
#
#   docker build -t ghcr.io/mapcache/mapcache:0.1.0 .
#
# Stage 1 builds a static (musl) binary (build.rs compiles its one C file with musl-tools'
# musl-gcc); stage 2 is distroless/static running as the `nonroot` user (65532), which the
# operator's pod security settings expect.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY e2e/Cargo.toml e2e/Cargo.toml
RUN mkdir -p src e2e/src/bin benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && touch e2e/src/lib.rs && echo 'fn main() {}' > e2e/src/bin/local-cluster.rs \
    && echo 'fn main() {}' > benches/engine.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-musl --package mapcache \
    && rm -rf src e2e/src benches
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-musl --package mapcache --bin mapcache \
    && install -D target/x86_64-unknown-linux-musl/release/mapcache /out/mapcache

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/mapcache /usr/local/bin/mapcache
USER 65532:65532
EXPOSE 6379 9090 8080
ENTRYPOINT ["mapcache"]
CMD ["--help"]
