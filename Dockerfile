# syntax=docker/dockerfile:1
#
# One Dockerfile for every service binary. The build stage compiles all five once (one
# shared dependency build); each final stage is a small distroless image holding one binary,
# running as the image's non-root user (65532). Build one with its target name:
#
#   docker build --target invite-svc -t referral-mesh/invite-svc:0.1.0 .
#
# Targets: invite-svc, fraud-svc, incentive-svc, analytics-svc, gateway. The binaries need
# only glibc and libgcc (SQLite is bundled, no TLS library is linked), which is exactly what
# distroless/cc ships.

# Keep in step with rust-toolchain.toml (CI checks that they agree).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG RUST_VERSION
WORKDIR /src
COPY . .
# The image's toolchain, not rust-toolchain.toml's (same version, but that file also asks
# for rustfmt and clippy, which a release build does not need to download).
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
# The cache mounts keep the registry and target dir between builds without baking them in.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p invite-svc -p fraud-svc -p incentive-svc -p analytics-svc -p gateway \
    && mkdir -p /out \
    && cp target/release/invite-svc target/release/fraud-svc target/release/incentive-svc \
          target/release/analytics-svc target/release/gateway /out/

# nonroot: uid/gid 65532, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532
WORKDIR /home/nonroot

FROM runtime AS invite-svc
COPY --from=build /out/invite-svc /usr/local/bin/invite-svc
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/invite-svc"]
CMD ["serve"]

FROM runtime AS fraud-svc
COPY --from=build /out/fraud-svc /usr/local/bin/fraud-svc
EXPOSE 50052 9090
ENTRYPOINT ["/usr/local/bin/fraud-svc"]
CMD ["serve"]

FROM runtime AS incentive-svc
COPY --from=build /out/incentive-svc /usr/local/bin/incentive-svc
EXPOSE 50053 9090
ENTRYPOINT ["/usr/local/bin/incentive-svc"]
CMD ["serve"]

FROM runtime AS analytics-svc
COPY --from=build /out/analytics-svc /usr/local/bin/analytics-svc
EXPOSE 50054 9090
ENTRYPOINT ["/usr/local/bin/analytics-svc"]
CMD ["serve"]

FROM runtime AS gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["serve"]
