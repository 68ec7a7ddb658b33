#!/usr/bin/env bash
# Installs what the tests need (Debian 12, as root), builds sluice twice (release with warnings
# as errors, and ASan+UBSan), and runs the whole suite against both: cmocka unit tests (ctest),
# pytest system tests on the real binary (Debian's /usr/bin/python3 with python3-pytest and
# python3-requests), then the libFuzzer targets for SLUICE_FUZZ_SECONDS each (default 60).
# Ends with one line "tests: N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
results="$root/build-results"
rm -rf "$results" && mkdir -p "$results"
failed_steps=()

step() { # step NAME COMMAND...: runs a step, remembers a failure, keeps going
  local name=$1; shift
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0)) s)"
  else echo "=== $name: FAILED ($((SECONDS - t0)) s)"; failed_steps+=("$name"); fi
}

py=/usr/bin/python3
system_tests() { # system_tests BIN JUNIT
  SLUICE_BIN="$1" "$py" -m pytest -q -p no:cacheprovider tests/system --junitxml="$2"
}
unit_tests() { # unit_tests BUILD_DIR JUNIT
  ctest --test-dir "$1" --output-on-failure --output-junit "$2"
}
fuzz() {
  local secs=${SLUICE_FUZZ_SECONDS:-60} ok=0
  for f in build-fuzz/fuzz/fuzz_*; do
    local name corpus
    name=$(basename "$f"); name=${name#fuzz_}
    corpus=$(mktemp -d); cp -r "tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
    "$f" -max_total_time="$secs" -timeout=25 -max_len=65536 -artifact_prefix="$results/" "$corpus" \
      > "$results/fuzz_$name.log" 2>&1 || ok=1
    tail -n 3 "$results/fuzz_$name.log"
    rm -rf "$corpus"
  done
  return $ok
}

step "install" bash scripts/setup.sh || true
[ ${#failed_steps[@]} -eq 0 ] || { echo "tests: 0 passed, 1 failed"; exit 1; }
format_check() { # every C file as .clang-format wants it
  git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
}
step "format (clang-format)" format_check
step "build (release, -Werror)" bash scripts/build.sh release
step "unit tests (release)" unit_tests build "$results/unit-release.xml"
step "system tests (release)" system_tests build/sluice "$results/system-release.xml"
step "build (ASan+UBSan)" bash scripts/build.sh asan
export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
step "unit tests (ASan+UBSan)" unit_tests build-asan "$results/unit-asan.xml"
step "system tests (ASan+UBSan)" system_tests build-asan/sluice "$results/system-asan.xml"
step "build (libFuzzer)" bash scripts/build.sh fuzz
step "fuzz (${SLUICE_FUZZ_SECONDS:-60} s per target)" fuzz

# One closing line over every JUnit report, plus the steps that failed outside them.
"$py" - "$results" "${#failed_steps[@]}" "${failed_steps[@]}" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {c.tag for c in case}
        if kinds & {"failure", "error"}: failed += 1
        elif "skipped" in kinds: skipped += 1
        else: passed += 1
steps = sys.argv[3:]
if steps: print("failed steps: " + "; ".join(steps))
# A step that failed without a failing test case (build, fuzz) still counts as a failure.
if steps and failed == 0: failed = len(steps)
print(f"tests: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or steps else 0)
PY
