# syntax=docker/dockerfile:1
# AUREN image: auren-runtime, auren-operator and kubectl-auren in one small image.
#
#   docker build -t auren/operator:0.1.0 .                    # the chart's default image
#   docker build --target runtime -t auren/runtime:0.1.0 .    # the image an AurenRuntime names
#
# Both images hold the same three binaries; they differ only in ENTRYPOINT (the operator's
# workloads set no command, so the runtime image must start auren-runtime by itself).
#
# Not built on the project's own test machines (they have no Docker engine); the cargo command
# below is the one CI runs (`--locked`: the exact Cargo.lock, nothing re-resolved).

FROM rust:1.95-bookworm AS builder
# librdkafka is built from source by rdkafka's `cmake-build` feature: it needs cmake and the
# libcurl headers (even with curl support off).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# zlib is linked statically: the distroless image below has no libz.so.1. The loop after the
# build is a guard: the binaries may only need what distroless/cc ships (glibc, libgcc_s,
# libstdc++).
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TARGET_DIR=/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/target \
    cargo build --release --locked -p auren-runtime -p auren-operator --bins \
 && mkdir -p /out \
 && cp /target/release/auren-runtime /target/release/auren-operator /target/release/kubectl-auren /out/ \
 && for bin in /out/*; do \
      extra=$(ldd "$bin" | awk '{print $1}' | grep -Ev '^(linux-vdso|/lib64/ld-linux|ld-linux|libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\b' || true); \
      if [ -n "$extra" ]; then echo "$bin needs libraries missing from the final image: $extra" >&2; exit 1; fi; \
    done

# glibc + libgcc + CA certificates, no shell, no package manager; runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS base
COPY --from=builder /out/auren-runtime /out/auren-operator /out/kubectl-auren /usr/local/bin/
USER nonroot

FROM base AS runtime
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/auren-runtime"]

# Last stage = the default target: the operator image.
FROM base AS operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/auren-operator"]
