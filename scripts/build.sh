#!/usr/bin/env bash
# Configures and builds sluice into a build directory.
# Usage: scripts/build.sh [release|asan|fuzz]   (default release -> build/)
# SLUICE_BUILD_TESTS=OFF skips the unit tests (and so the need for cmocka).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc 2>/dev/null || echo 2)
case "$kind" in
  release) dir=build; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON -DSLUICE_SANITIZE=OFF) ;;
  asan)    dir=build-asan; opts=(-DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON -DSLUICE_WERROR=ON) ;;
  fuzz)    dir=build-fuzz; opts=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug
                                 -DSLUICE_SANITIZE=ON -DSLUICE_FUZZ=ON -DSLUICE_TESTS=OFF) ;;
  *) echo "usage: $0 [release|asan|fuzz]" >&2; exit 2 ;;
esac
[ "$kind" = fuzz ] || opts+=(-DSLUICE_TESTS="${SLUICE_BUILD_TESTS:-ON}")
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
