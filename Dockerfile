# heapwatch's container image: heapwatchd (the sidecar), its web UI, the
# LD_PRELOAD shim libheapwatch.so that the init container copies into the
# application's pod, heapwatch-symbolize, and the heapwatch-demo service.
#
#   docker build -t heapwatch:0.1.0 .
#
# Everything comes from Debian 12 packages. The build stage installs the
# build dependencies with the project's own scripts/install-deps.sh; the
# runtime stage has only the shared libraries the binaries load. Installed
# under /opt/heapwatch (bin/, share/heapwatch/ui, and lib/heapwatch/: the
# shim with the libraries it needs beyond glibc, libunwind.so.8 and
# liblzma.so.5, copied from this stage's Debian packages at install time; the
# init container copies that directory into the application's pod). Runs as the
# unprivileged uid/gid 65532 ("heapwatch"); k8s/components/heapwatch uses
# the same ids.
#
# Standalone (outside Kubernetes), profile a program on the host:
#   docker run -d --name heapwatchd -v /run/heapwatch:/run/heapwatch \
#     -e HEAPWATCH_HTTP=0.0.0.0:7070 -p 127.0.0.1:7070:7070 heapwatch:0.1.0
# heapwatchd listens on loopback by default; inside a container it must bind
# 0.0.0.0 to be reachable, so publish the port on loopback only or give it
# --token-file.
#
# tests/e2e/test_k8s.py checks, without Docker, that every path this file
# copies exists, that the build configures from the copied files alone, and
# that the runtime packages exist in Debian 12 and cover every library the
# installed binaries need, and that the shim's directory, copied as the init
# container does into an image with only glibc, loads and profiles there.

# ---- build ------------------------------------------------------------------
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN HEAPWATCH_DEPS=build scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt ./
COPY wire wire
COPY preload preload
COPY symbolizer symbolizer
COPY collector collector
COPY ui ui
COPY demo demo
# No tests or benchmarks in the image. LIBDIR is pinned so that the shim's
# path (lib/heapwatch/, which the manifests name) does not depend on
# GNUInstallDirs' choice for this prefix.
RUN cmake -S . -B /build \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBUILD_TESTING=OFF \
      -DHEAPWATCH_BENCH=OFF \
      -DCMAKE_INSTALL_PREFIX=/opt/heapwatch \
      -DCMAKE_INSTALL_LIBDIR=lib \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# The shared libraries of heapwatchd and heapwatch-symbolize (libc, libstdc++,
# libgcc, zlib and liblzma are in the base image already). None for the shim:
# it is loaded only in the application's pod, from lib/heapwatch/ beside the
# libraries it needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libboost-program-options1.81.0 \
      libboost-url1.81.0 \
      libdw1 \
      libelf1 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 65532 heapwatch \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin heapwatch \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/heapwatch /run/heapwatch
COPY --from=build /opt/heapwatch /opt/heapwatch
ENV PATH=/opt/heapwatch/bin:$PATH \
    HEAPWATCH_UI_DIR=/opt/heapwatch/share/heapwatch/ui
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 7070
ENTRYPOINT ["/opt/heapwatch/bin/heapwatchd"]
