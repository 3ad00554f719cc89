# syntax=docker/dockerfile:1
# AUREN images: the operator image (auren-operator) and the runtime image
# (auren-runtime only). Each carries only its own binaries.
#
#   docker build -t auren/operator:0.1.0 .                    # the chart's default image
#   docker build --target runtime -t auren/runtime:0.1.0 .    # the image an AurenRuntime names
#
# On the project's own machines (no Docker engine, no registry) `scripts/images.py` builds the
# same two images with buildah from THIS file: it runs the builder stage's cargo command on the
# host, assembles a distroless-style base from the machine's Debian files, and applies the final
# stages' COPY/USER/EXPOSE/ENTRYPOINT lines as written here. `make test` checks the result.

FROM rust:1.95-bookworm AS builder
# librdkafka is built from source by rdkafka's `cmake-build` feature: it needs cmake and the
# libcurl headers (even with curl support off).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# zlib is linked statically: the distroless image below has no libz.so.1. The release profile
# strips the binaries (Cargo.toml). The loop after the build is a guard: the binaries may only
# need what distroless/cc ships (the dynamic loader of any architecture, glibc, libgcc_s,
# libstdc++).
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TARGET_DIR=/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/target \
    cargo build --release --locked -p auren-runtime -p auren-operator --bins \
 && mkdir -p /out \
 && cp /target/release/auren-runtime /target/release/auren-operator /out/ \
 && for bin in /out/*; do \
      extra=$(ldd "$bin" | awk '{print $1}' | grep -Ev '^(linux-vdso|linux-gate|/lib(64)?/ld-linux|/lib/ld-linux|ld-linux|libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\b' || true); \
      if [ -n "$extra" ]; then echo "$bin needs libraries missing from the final image: $extra" >&2; exit 1; fi; \
    done

# glibc + libgcc + CA certificates, no shell, no package manager; runs as uid/gid 65532
# ("nonroot"), numeric so that runAsNonRoot can verify it.
FROM gcr.io/distroless/cc-debian12:nonroot AS base
USER 65532:65532

FROM base AS runtime
COPY --from=builder /out/auren-runtime /usr/local/bin/
# mimalloc 3 keeps freed memory for a second and, on Linux, commits its arenas up front, so
# what it purges still counts as resident: api 66 -> ~35 MiB, consumer 101 -> ~70 MiB peak with
# these. A purge delay of 0 cost batch ingest a tenth to a quarter; 10 ms did not
# (docs/benchmarks.md). `make bench` runs the binary with these lines.
ENV MIMALLOC_PURGE_DELAY=10 MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/auren-runtime"]

# Last stage = the default target: the operator image.
FROM base AS operator
COPY --from=builder /out/auren-operator /usr/local/bin/
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/auren-operator"]
