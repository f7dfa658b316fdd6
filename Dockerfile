# syntax=docker/dockerfile:1.7@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e
#
# MediFlow images. One Dockerfile, two final targets (docs/adr/0004-containers-and-keda.md):
#
#   standalone  the `handler` binary alone on distroless (non-root 65532). linux/amd64 AND linux/arm64:
#                 docker buildx build --platform linux/amd64,linux/arm64 --target standalone \
#                   -t <acr>.azurecr.io/mediflow:<build id> --push .
#   functions   the Azure Functions host running `handler` as a custom handler. linux/amd64 ONLY:
#               Microsoft publishes no linux/arm64 Functions host image (azure-functions-docker#224),
#               so `--platform linux/arm64` with this target fails at the base image. Build it with:
#                 docker buildx build --platform linux/amd64 --target functions \
#                   -t <acr>.azurecr.io/mediflow-functions:<build id> --push .
#
# The compiler always runs natively on $BUILDPLATFORM and cross-compiles to $TARGETPLATFORM with
# Debian's cross gcc (needed by aws-lc-sys, the TLS crypto library), so no QEMU runs the compiler.
# Cache mounts keep the cargo registry and the target folder (one per architecture) between builds.
#
# HANDLER_SOURCE=prebuilt skips compilation and takes prebuilt/<os>-<arch>/handler from the build
# context instead; .ci/checks/images.sh uses it to build the final stages offline.
#
# Every base image is pinned by digest (name:tag@sha256:...): the tag says what it is, the digest
# is what is pulled, so a moved tag cannot change a build. .ci/checks/image_pins.py refuses a FROM
# without a digest (the one open exception is listed, with its reason, in
# .ci/checks/image-pins-pending.txt); the pipeline's Test stage resolves every pinned digest
# (infra/scripts/verify-image-pins.sh). To move to a newer base: look up the tag's current index
# digest (`docker buildx imagetools inspect <name:tag>`), replace the digest here, open a PR.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG STANDALONE_BASE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
ARG FUNCTIONS_BASE=mcr.microsoft.com/azure-functions/dotnet:4
ARG HANDLER_SOURCE=build

# ---------------------------------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS handler-build
ARG TARGETARCH
ARG BUILDARCH
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Keep downloaded .debs in the cache mount (the rust image deletes them after every install).
RUN rm -f /etc/apt/apt.conf.d/docker-clean
# The cross toolchain for the target architecture; nothing when building natively. Versions are
# not pinned (DL3008): they come from the pinned rust:<version>-bookworm suite. $pkgs is a list
# and must split (SC2086).
# hadolint ignore=DL3008,SC2086
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    set -eu; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      case "$TARGETARCH" in \
        arm64) pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
        amd64) pkgs="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
        *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
      esac; \
      apt-get update; \
      apt-get install -y --no-install-recommends $pkgs; \
    fi
# The Rust target for the architecture, and the cross linker/C compiler if needed. Written to a
# file so the build step below can source it.
RUN set -eu; \
    case "$TARGETARCH" in \
      arm64) triple=aarch64-unknown-linux-gnu; gcc=aarch64-linux-gnu ;; \
      amd64) triple=x86_64-unknown-linux-gnu; gcc=x86_64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    env_name="$(echo "$triple" | tr 'a-z-' 'A-Z_')"; \
    { echo "export RUST_TARGET=$triple"; \
      if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
        echo "export CARGO_TARGET_${env_name}_LINKER=${gcc}-gcc"; \
        echo "export CC_$(echo "$triple" | tr '-' '_')=${gcc}-gcc"; \
        echo "export AR_$(echo "$triple" | tr '-' '_')=${gcc}-ar"; \
      fi; } > /etc/rust-target.env; \
    . /etc/rust-target.env; \
    rustup target add "$RUST_TARGET"
# Sources come in as a read-only bind mount (see .dockerignore); the cargo registry and the target
# folder (outside /src, one per architecture) are cache mounts, so an unchanged dependency tree is
# not rebuilt. The binary is copied out in the same step: cache mounts are not part of the image.
ENV CARGO_TARGET_DIR=/cargo-target
RUN --mount=type=bind,target=/src \
    --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=mediflow-target-${TARGETARCH},target=/cargo-target,sharing=locked \
    set -eu; \
    . /etc/rust-target.env; \
    cargo build --locked --release --package handler --target "$RUST_TARGET"; \
    install -D -m 0755 "$CARGO_TARGET_DIR/$RUST_TARGET/release/handler" /out/handler

# ---------------------------------------------------------------------------------------------
# A binary built outside (offline checks): prebuilt/<os>-<arch>/handler in the build context.
FROM scratch AS handler-prebuilt
ARG TARGETOS
ARG TARGETARCH
COPY prebuilt/${TARGETOS}-${TARGETARCH}/handler /out/handler

# The binary the final stages copy: from the build stage (default) or prebuilt.
# checkov:skip=CKV_DOCKER_7: handler-${HANDLER_SOURCE} names a stage of this file, not an image; it has no tag
# hadolint ignore=DL3006
FROM handler-${HANDLER_SOURCE} AS handler

# ---------------------------------------------------------------------------------------------
# standalone: HTTP on 8080 (`http`), Prometheus metrics on 9090 (`metrics`), own queue poller.
# distroless/cc: glibc + libgcc_s, no shell, no package manager; the :nonroot tag runs as 65532.
# GLIBC_TUNABLES: glibc's malloc with at most 2 arenas (not one per busy thread) and a fixed trim
# threshold, so freed memory goes back to the kernel: RSS after the benchmark's load 24.8 -> 20.5 MB
# with no measured change in req/s (issue 25, BENCHMARKS.md). bench/harness starts the service
# with this same line.
FROM ${STANDALONE_BASE} AS standalone
ENV MEDIFLOW_ADDR=0.0.0.0:8080 \
    MEDIFLOW_METRICS_ADDR=0.0.0.0:9090 \
    GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072 \
    LOG_FORMAT=json
COPY --from=handler --chmod=0755 /out/handler /handler
USER 65532:65532
EXPOSE 8080 9090
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK in either image on purpose; Kubernetes probes /health and /ready (keda/) and these images have no shell or curl to run one
ENTRYPOINT ["/handler"]

# ---------------------------------------------------------------------------------------------
# functions: linux/amd64 ONLY (no arm64 Functions host image exists; see the header).
# The host serves HTTP on 8080 instead of its default 80, so it runs without root or
# NET_BIND_SERVICE; it launches /home/site/wwwroot/handler on a random local port.
# host.json and every function-definitions/<Function>/function.json go straight into the app root,
# where the host looks for <Function>/function.json.
FROM ${FUNCTIONS_BASE} AS functions
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    FUNCTIONS_WORKER_RUNTIME=custom \
    ASPNETCORE_URLS=http://+:8080 \
    MEDIFLOW_METRICS_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json \
    HOME=/tmp
COPY host.json /home/site/wwwroot/host.json
COPY function-definitions/ /home/site/wwwroot/
COPY --from=handler --chmod=0755 /out/handler /home/site/wwwroot/handler
USER 65532:65532
EXPOSE 8080 9090
# The base image's CMD (the Functions host) is kept unchanged.
