#!/usr/bin/env bash
# scripts/test.sh — the whole check (owned by the tooling; .ci/run execs it):
# installs the missing Debian packages, builds, `npm ci` for the web dashboard when
# it has a lock file, runs every CTest test (the doctest unit tests, one test per
# pytest integration module, which starts its own Postgres, Mosquitto and
# fleet-manager; the browser test is one of them), the benchmark smoke test and the
# quick fuzz run. Exits non-zero on any failure; the last line is a plain
# "summary: N passed, N failed[, N skipped]" counting test cases (from the results
# in <build>/test-results, see tests/report_counts.py), each failed step adding one
# failure.
#
# Environment: MAESTRA_SKIP_INSTALL=1 / MAESTRA_SKIP_BUILD=1 / MAESTRA_SKIP_BENCH=1 /
# MAESTRA_SKIP_FUZZ=1 skip those steps, MAESTRA_BUILD_DIR (build/) picks the build
# folder; extra arguments go to ctest (e.g. scripts/test.sh -R unit, or
# -R integration.test_http_guide) and skip the bench and fuzz steps.
# shellcheck disable=SC2119 # build takes optional CMake arguments
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MAESTRA_REPO" || exit 1

failures=()
cases_passed=0
cases_failed=0
cases_skipped=0

finish() {
  local failed=$((cases_failed + ${#failures[@]})) skipped=''
  if ((${#failures[@]})); then
    printf '[maestra] failed steps: %s\n' "${failures[*]}"
  fi
  ((cases_skipped)) && skipped=", ${cases_skipped} skipped"
  printf 'test cases: %s passed, %s failed%s; other steps failed: %s\n' \
    "$cases_passed" "$cases_failed" "$skipped" "${#failures[@]}"
  printf 'summary: %s passed, %s failed%s\n' "$cases_passed" "$failed" "$skipped"
  ((failed == 0)) && exit 0
  exit 1
}

if [[ "${MAESTRA_SKIP_INSTALL:-0}" != 1 ]]; then
  install_dependencies || { failures+=(install); finish; }
fi

raise_nofile_limit

if [[ "${MAESTRA_SKIP_BUILD:-0}" != 1 ]]; then
  log "building into ${MAESTRA_BUILD_DIR}"
  build || { failures+=(build); finish; }
fi

# The web dashboard (examples/dashboard) installs its npm dependencies from its
# lock file before the tests (the browser test needs them), so a broken lock
# file fails here rather than on a user's machine.
if [[ -f examples/dashboard/package-lock.json ]]; then
  log "npm ci in examples/dashboard"
  (cd examples/dashboard && npm ci --no-audit --no-fund) || { failures+=(dashboard-npm-ci); finish; }
fi

log "running ctest"
# Each CTest test writes its case results here (tests/CMakeLists.txt); stale ones
# from an earlier run must not be counted.
results="${MAESTRA_BUILD_DIR}/test-results"
rm -rf "$results"
mkdir -p "$results"
ctest --test-dir "$MAESTRA_BUILD_DIR" --output-on-failure --no-tests=error \
  --output-junit "$results/ctest.xml" "$@"
ctest_status=$?
log "test cases by CTest test"
report="$(/usr/bin/python3 "$MAESTRA_REPO/tests/report_counts.py" "$results" "$results/ctest.xml")" ||
  failures+=(report-counts)
printf '%s\n' "$report" | sed '$d'
read -r p f s <<<"$(printf '%s\n' "$report" | tail -n 1)"
if [[ "$p $f $s" =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
  cases_passed=$p cases_failed=$f cases_skipped=$s
fi
if ((ctest_status != 0)) && ((cases_failed == 0)); then
  failures+=(ctest) # ctest failed without a failed case (no tests, bad arguments)
fi

# The benchmark's quick mode as a smoke test (does it run, are the numbers sane;
# its targets are checked by the benchmark, never here). Skipped when ctest got
# extra arguments (a partial run) or with MAESTRA_SKIP_BENCH=1.
if (($# == 0)) && [[ "${MAESTRA_SKIP_BENCH:-0}" != 1 ]]; then
  log "bench smoke test: scripts/bench.sh --quick --smoke"
  "$MAESTRA_REPO/scripts/bench.sh" --quick --smoke || failures+=(bench-smoke)
fi

# The fuzz targets' quick run (scripts/fuzz.sh, when present and clang++ is
# installed). Skipped when ctest got extra arguments or with MAESTRA_SKIP_FUZZ=1.
if (($# == 0)) && [[ "${MAESTRA_SKIP_FUZZ:-0}" != 1 ]]; then
  if [[ -x "$MAESTRA_REPO/scripts/fuzz.sh" ]] && command -v clang++ >/dev/null 2>&1; then
    log "fuzz: scripts/fuzz.sh --quick"
    "$MAESTRA_REPO/scripts/fuzz.sh" --quick || failures+=(fuzz)
  else
    log "fuzz: skipped (needs an executable scripts/fuzz.sh and clang++)"
  fi
fi

finish
