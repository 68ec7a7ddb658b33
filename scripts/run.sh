#!/usr/bin/env bash
# Installs what sluice needs (Debian 12, as root), builds it, and runs `sluice serve` on the
# embedded default (data in ./data, API on 127.0.0.1:8080 unless SLUICE_* say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --run-only
SLUICE_BUILD_TESTS=OFF bash scripts/build.sh release
exec build/sluice serve
