#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, run and test. Run as root on Debian 12.
# Usage: scripts/setup.sh [--run-only]
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Build and runtime libraries of the product.
build_pkgs=(build-essential cmake pkg-config
  libmicrohttpd-dev libcjson-dev liblmdb-dev libsqlite3-dev libssl-dev
  libpcre2-dev libhyperscan-dev libcurl4-openssl-dev libmaxminddb-dev librdkafka-dev)
# Unit tests, sanitizer and fuzz builds, the format check, system tests (Debian's
# /usr/bin/python3), and the benchmark scripts (curl, procps). The Kafka tests run a real
# Apache Kafka broker (scripts/kafka.sh) on Java 17, its jars fetched from Maven Central with
# Maven, and check it with Debian's kafka-python 2.0.2 (python3-kafka), which speaks the
# protocol versions Kafka 4 kept (topics, configs, groups, SASL/SCRAM: tried on 4.3.1).
# Only the tests need Java; the product and scripts/run.sh do not.
test_pkgs=(clang libclang-rt-14-dev libcmocka-dev clang-format
  python3 python3-pytest python3-requests python3-hypothesis libmaxmind-db-writer-perl
  dnsmasq-base
  openjdk-17-jre-headless maven python3-kafka
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

# The Kafka broker's jars, so the tests find them in the cache (a no-op once they are there).
if [ "${1:-}" != "--run-only" ]; then
  bash "$(dirname "$0")/kafka.sh" fetch > /dev/null
fi
