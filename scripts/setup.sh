#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, run and test. Run as root on Debian 12.
# Usage: scripts/setup.sh [--run-only]
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Build and runtime libraries of the product.
build_pkgs=(build-essential cmake pkg-config
  libmicrohttpd-dev libcjson-dev liblmdb-dev libsqlite3-dev libssl-dev
  libpcre2-dev libhyperscan-dev libcurl4-openssl-dev libmaxminddb-dev)
# Unit tests, sanitizer and fuzz builds, the format check, system tests (Debian's
# /usr/bin/python3), and the benchmark scripts (curl, procps).
test_pkgs=(clang libclang-rt-14-dev libcmocka-dev clang-format
  python3 python3-pytest python3-requests python3-hypothesis libmaxmind-db-writer-perl
  dnsmasq-base
  procps curl git)

pkgs=("${build_pkgs[@]}")
if [ "${1:-}" != "--run-only" ]; then pkgs+=("${test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
