#!/usr/bin/env bash
# Regenerates docs/configuration.md from the binary's configuration table.
# Usage: scripts/gen_config_doc.sh [path/to/sluice]   (default build/sluice)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/sluice}
{
  cat <<'HEAD'
# Configuration reference

Every setting is an environment variable. This table is generated from the binary's own
configuration table by `scripts/gen_config_doc.sh` (`sluice config --markdown`; a system test
checks it is current). `sluice config` prints the effective values and where each came from.
A bad value stops `serve` (and every other command) with exit code 2 and a message naming the
variable, the value and what is accepted. Unknown `SLUICE_*` and `REFLEX_EVENT_PROCESSOR_*`
variables are reported as warnings.

HEAD
  env -i PATH="$PATH" "$bin" config --markdown
  cat <<'TAIL'

## Notes

- Durations: a bare number is seconds; `s`, `m`, `h` and `d` suffixes are accepted (`90s`, `5m`,
  `12h`, `7d`). Sizes: bytes, or a number with `K`, `M` or `G` (powers of 1024).
- Where sluice's default differs from ReflexSOAR's, the meaning column says so. Reflex's
  `REFLEX_EVENT_PROCESSOR_MONITOR_WORKERS` does not exist here: sluice always heals its workers.
TAIL
} > docs/configuration.md
