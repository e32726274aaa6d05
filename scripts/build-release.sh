#!/usr/bin/env bash
# Builds the release issun-server: the one build recipe shared by
# `make release` / `make run` / `make install` and deploy/Dockerfile, so the
# container ships exactly what the README's commands build.
#   scripts/build-release.sh [BUILD_DIR]     (default: build/release)
#   JOBS=N                                   parallel jobs (default: nproc)
# The binary ends up at BUILD_DIR/issun-server.  Build dependencies come from
# scripts/deps.sh build (the callers run it first).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build/release}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DISSUN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target issun-server
