#!/usr/bin/env bash
# scripts/test.sh — the whole check (owned by the tooling; .ci/run execs it):
# installs the missing Debian packages, builds, runs every CTest test (the
# doctest unit tests and the pytest integration suite, which starts its own
# Postgres, Mosquitto and fleet-manager), and `npm ci` for the web dashboard when
# it has a lock file. Exits non-zero on any failure; the last line is a plain
# "summary: N passed, N failed".
#
# Environment: MAESTRA_SKIP_INSTALL=1 / MAESTRA_SKIP_BUILD=1 skip those steps,
# MAESTRA_BUILD_DIR (build/) picks the build folder; extra arguments go to ctest
# (e.g. scripts/test.sh -R unit).
# shellcheck disable=SC2119 # build takes optional CMake arguments
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MAESTRA_REPO" || exit 1

failures=()
ctest_passed=0
ctest_failed=0

finish() {
  local failed=$((ctest_failed + ${#failures[@]}))
  if ((${#failures[@]})); then
    printf '[maestra] failed steps: %s\n' "${failures[*]}"
  fi
  printf 'ctest: %s passed, %s failed; other steps failed: %s\n' \
    "$ctest_passed" "$ctest_failed" "${#failures[@]}"
  printf 'summary: %s passed, %s failed\n' "$ctest_passed" "$failed"
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
ctest_log="$(mktemp)"
ctest --test-dir "$MAESTRA_BUILD_DIR" --output-on-failure --no-tests=error "$@" 2>&1 | tee "$ctest_log"
ctest_status=${PIPESTATUS[0]}
# "100% tests passed, 0 tests failed out of 2"
counts="$(sed -n 's/^.*tests passed, \([0-9][0-9]*\) tests\{0,1\} failed out of \([0-9][0-9]*\).*$/\1 \2/p' "$ctest_log" | tail -n 1)"
rm -f "$ctest_log"
if [[ -n "$counts" ]]; then
  read -r ctest_failed total <<<"$counts"
  ctest_passed=$((total - ctest_failed))
fi
if ((ctest_status != 0)) && ((ctest_failed == 0)); then
  failures+=(ctest) # ctest failed without counting a test (no tests, bad arguments)
fi

# The benchmark's quick mode as a smoke test (does it run, are the numbers sane;
# its targets are checked by the benchmark, never here). Skipped when ctest got
# extra arguments (a partial run) or with MAESTRA_SKIP_BENCH=1.
if (($# == 0)) && [[ "${MAESTRA_SKIP_BENCH:-0}" != 1 ]]; then
  log "bench smoke test: scripts/bench.sh --quick --smoke"
  "$MAESTRA_REPO/scripts/bench.sh" --quick --smoke || failures+=(bench-smoke)
fi

finish
