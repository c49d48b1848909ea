# syntax=docker/dockerfile:1
# The identity service: one static-ish binary (glibc only) on distroless.
#   docker build -t identity .
#   docker run -p 50051:50051 -p 8080:8080 identity        (SQLite under /home/nonroot/data)
# Kubernetes: helm/identity (PostgreSQL, read-only root filesystem).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads: the workspace manifests, the protos that
# crates/client's build script compiles, and the sources of every workspace
# member (Cargo reads each member's manifest even though only `identity` is built).
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY migrations ./migrations
COPY crates/bench ./crates/bench
COPY crates/client ./crates/client
COPY build.rs ./
COPY src ./src
# The cache mounts keep downloaded crates and compiled dependencies between
# builds; the binary is copied out because the target cache is not in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin identity \
 && install -D -m 0755 target/release/identity /out/identity

# libc, libm and libgcc_s are all the binary links (ldd): the "cc" flavour has them.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="identity" \
      org.opencontainers.image.description="gRPC identity service with its legacy XML gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/identity /usr/local/bin/identity
# The binary's own defaults are loopback-only; a container must be reachable.
ENV IDENTITY_GRPC_ADDR=0.0.0.0:50051 \
    IDENTITY_HTTP_ADDR=0.0.0.0:8080
# glibc's malloc otherwise keeps freed argon2 buffers (19 MiB each) in its
# arenas, one arena per thread: under load the process grew without a plateau
# in sight (docs/operations.md, "Sizing").
ENV MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576
# The default SQLite database and .eml outbox are relative (./data): the
# nonroot user's home is writable when the root filesystem is not read-only.
WORKDIR /home/nonroot
USER nonroot
# gRPC, HTTP gateway, metrics (when IDENTITY_METRICS_ADDR=0.0.0.0:9090).
EXPOSE 50051 8080 9090
ENTRYPOINT ["/usr/local/bin/identity"]
CMD ["serve"]
