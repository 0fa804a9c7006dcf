#!/usr/bin/env bash
# scripts/fuzz.sh — the libFuzzer targets of tests/fuzz (owned by the tooling):
# builds them with clang++ (ASan+UBSan) into ${MAESTRA_BUILD_DIR}-fuzz, replays
# the committed seeds and crash reproducers, then fuzzes each target for a fixed
# time. New corpus entries and crash files go to the work folder, never into the
# repository. Exits 1 on any crash, invariant break, timeout or build failure,
# printing the reproducer and the command that replays it; prints a skip line and
# exits 0 when clang++ with libFuzzer is not installed.
#
#   ./scripts/fuzz.sh --quick          12 s per target, 2 at a time (what scripts/test.sh runs)
#   ./scripts/fuzz.sh                  5 minutes per target
#   ./scripts/fuzz.sh --seconds 1800 --only registration,heartbeat
#   ./scripts/fuzz.sh --help
#
# shellcheck disable=SC2317 # the trap handler is reached through trap
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MAESTRA_REPO" || exit 1

FUZZ_SOURCE_DIR="$MAESTRA_REPO/tests/fuzz"
FUZZ_BUILD_DIR="${MAESTRA_BUILD_DIR%/}-fuzz"
FUZZ_CXX="${MAESTRA_FUZZ_CXX:-clang++}"

usage() {
  cat <<'EOF'
Usage: scripts/fuzz.sh [--quick] [--seconds N] [--only NAME[,NAME...]] [--jobs N] [--help]

Builds the libFuzzer targets of tests/fuzz (one per core parser of outside input)
with clang++, AddressSanitizer and UndefinedBehaviorSanitizer, replays the seed
corpus (tests/fuzz/corpus/NAME) and the committed crash reproducers
(tests/fuzz/crashes/NAME-*), then fuzzes each target.

  --quick        12 seconds per target (scripts/test.sh runs this)
  --seconds N    N seconds per target (default 300)
  --only LIST    only these targets (comma-separated; see the list below)
  --jobs N       targets fuzzed at once (default: the number of cores, at most 2)

Targets: registration heartbeat presence patch list_query topics config

Build folder: ${MAESTRA_BUILD_DIR:-build}-fuzz. Work folder (new corpus entries,
crash files, logs): <build folder>/work/NAME, or MAESTRA_FUZZ_WORK_DIR/NAME; it
grows across runs, delete it to start over. A crash prints the file and the
command replaying it, e.g. build-fuzz/fuzz_patch build-fuzz/work/patch/crash-<sha1>.
To keep one as a regression input, copy it to tests/fuzz/crashes/NAME-<sha1>.

Exit status: 0 all clean (or skipped: no clang++/libFuzzer), 1 a finding or a
build failure, 2 bad arguments.
EOF
}

all_targets=(registration heartbeat presence patch list_query topics config)
seconds=300
only=""
jobs="$(nproc 2>/dev/null || echo 1)"
((jobs > 2)) && jobs=2

while (($#)); do
  case "$1" in
    --quick) seconds=12 ;;
    --seconds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
      seconds="$2"; shift ;;
    --seconds=*)
      seconds="${1#--seconds=}"
      [[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; } ;;
    --only)
      [[ -n "${2:-}" ]] || { usage >&2; exit 2; }
      only="$2"; shift ;;
    --only=*) only="${1#--only=}" ;;
    --jobs)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
      jobs="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'fuzz.sh: unknown argument %s\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

targets=()
if [[ -n "$only" ]]; then
  IFS=',' read -r -a wanted <<<"$only"
  for name in "${wanted[@]}"; do
    if [[ ! -f "$FUZZ_SOURCE_DIR/fuzz_$name.cpp" ]]; then
      printf 'fuzz.sh: no target %s (targets: %s)\n' "$name" "${all_targets[*]}" >&2
      exit 2
    fi
    targets+=("$name")
  done
else
  targets=("${all_targets[@]}")
fi

# --- is clang++ with libFuzzer here? ---------------------------------------------
skip() {
  printf '[maestra] fuzz: SKIPPED: %s (Debian 12: apt-get install clang libclang-rt-dev llvm)\n' "$1"
  exit 0
}
command -v "$FUZZ_CXX" >/dev/null 2>&1 || skip "$FUZZ_CXX is not installed"
probe_dir="$(mktemp -d)"
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  >"$probe_dir/probe.cpp"
if ! "$FUZZ_CXX" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" \
  >"$probe_dir/log" 2>&1; then
  reason="$(head -n 1 "$probe_dir/log")"
  rm -rf "$probe_dir"
  skip "$FUZZ_CXX cannot link -fsanitize=fuzzer,address,undefined (${reason:-no output})"
fi
rm -rf "$probe_dir"

# Readable stack traces: the symbolizer next to this clang, when PATH has none.
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]]; then
  symbolizer="$("$FUZZ_CXX" -print-prog-name=llvm-symbolizer 2>/dev/null)"
  if [[ -x "$symbolizer" ]]; then
    export ASAN_SYMBOLIZER_PATH="$symbolizer" UBSAN_SYMBOLIZER_PATH="$symbolizer"
  fi
fi

# --- build -------------------------------------------------------------------------
log "fuzz: building tests/fuzz with $FUZZ_CXX into $FUZZ_BUILD_DIR"
mkdir -p "$FUZZ_BUILD_DIR" || exit 1
cmake -S "$FUZZ_SOURCE_DIR" -B "$FUZZ_BUILD_DIR" -DCMAKE_CXX_COMPILER="$FUZZ_CXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$FUZZ_BUILD_DIR/configure.log" 2>&1 ||
  { cat "$FUZZ_BUILD_DIR/configure.log" >&2; log "fuzz: FAILED: cmake could not configure tests/fuzz"; exit 1; }
build_targets=()
for name in "${targets[@]}"; do build_targets+=(--target "fuzz_$name"); done
cmake --build "$FUZZ_BUILD_DIR" -j "${MAESTRA_BUILD_JOBS:-$(nproc)}" "${build_targets[@]}" \
  >"$FUZZ_BUILD_DIR/build.log" 2>&1 ||
  { tail -n 60 "$FUZZ_BUILD_DIR/build.log" >&2; log "fuzz: FAILED: the build of tests/fuzz"; exit 1; }

work_root="${MAESTRA_FUZZ_WORK_DIR:-$FUZZ_BUILD_DIR/work}"

# Options every run shares: a 10 s input is a finding (a parser must not be that
# slow), as is 2 GiB of memory; JSON targets may grow inputs past the 64 KiB body
# limit so the limit itself is exercised.
fuzz_options() {
  local name="$1"
  local -a options=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  case "$name" in
    registration|heartbeat|presence|patch) options+=(-dict="$FUZZ_SOURCE_DIR/json.dict" -max_len=70000) ;;
    *) options+=(-dict="$FUZZ_SOURCE_DIR/text.dict") ;;
  esac
  printf '%s\n' "${options[@]}"
}

findings=()

# Replays the seeds and the committed reproducers of one target: each must pass.
replay() {
  local name="$1" binary="$FUZZ_BUILD_DIR/fuzz_$1" file
  local -a inputs=()
  for file in "$FUZZ_SOURCE_DIR/corpus/$name"/* "$FUZZ_SOURCE_DIR/crashes/$name"-*; do
    [[ -f "$file" ]] && inputs+=("$file")
  done
  ((${#inputs[@]})) || return 0
  for file in "${inputs[@]}"; do
    if ! "$binary" -timeout=10 "$file" >"$work_root/$name/replay.log" 2>&1; then
      grep -m 1 -E '^\*\*\*|ERROR:|SUMMARY:' "$work_root/$name/replay.log" >&2
      printf '[maestra] fuzz: FAILED %s: a committed input fails: %s\n  replay: %s %s\n' \
        "$name" "${file#"$MAESTRA_REPO"/}" "$binary" "$file" >&2
      findings+=("$name")
      return 1
    fi
  done
  log "fuzz: $name: ${#inputs[@]} committed inputs replay cleanly"
}

# Fuzzes one target for $seconds (run in the background; its log is work/NAME/fuzz.log).
fuzz_one() {
  local name="$1" dir="$work_root/$1"
  local -a options
  mapfile -t options < <(fuzz_options "$name")
  touch "$dir/.started"
  timeout --signal=INT --kill-after=30 "$((seconds + 60))" \
    "$FUZZ_BUILD_DIR/fuzz_$name" "${options[@]}" -max_total_time="$seconds" \
    -artifact_prefix="$dir/" "$dir/corpus" "$FUZZ_SOURCE_DIR/corpus/$name" >"$dir/fuzz.log" 2>&1
}

# One line per target from libFuzzer's final statistics; on a finding, the reproducer.
report() {
  local name="$1" status="$2" dir="$work_root/$1"
  local runs rate rss added cov artifact
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/fuzz.log" | tail -n 1)"
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/fuzz.log" | tail -n 1)"
  added="$(sed -n 's/^stat::new_units_added: *//p' "$dir/fuzz.log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$dir/fuzz.log" | tail -n 1)"
  if ((status == 0)); then
    printf '[maestra] fuzz: ok     %-13s %4s s  %9s runs  %6s exec/s  %s  +%s corpus  peak %s MB\n' \
      "$name" "$seconds" "${runs:-?}" "${rate:-?}" "${cov:-cov: ?}" "${added:-0}" "${rss:-?}" >&2
    return 0
  fi
  findings+=("$name")
  artifact="$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) -newer "$dir/.started" -print | head -n 1)"
  grep -m 3 -E '^\*\*\*|ERROR:|SUMMARY:' "$dir/fuzz.log" >&2
  if [[ -n "$artifact" ]]; then
    printf '[maestra] fuzz: FAILED %s: reproducer %s\n  replay: %s %s\n' \
      "$name" "$artifact" "$FUZZ_BUILD_DIR/fuzz_$name" "$artifact" >&2
  else
    printf '[maestra] fuzz: FAILED %s: exit status %s without a reproducer; log %s\n' \
      "$name" "$status" "$dir/fuzz.log" >&2
  fi
}

running=()
stop_children() {
  local pid
  for pid in "${running[@]}"; do kill -INT "$pid" 2>/dev/null; done
  wait
  log "fuzz: interrupted"
  exit 1
}
trap stop_children INT TERM

for name in "${targets[@]}"; do
  mkdir -p "$work_root/$name/corpus"
  replay "$name"
done

log "fuzz: ${#targets[@]} targets, $seconds s each, $jobs at a time; work folder $work_root"
pending=("${targets[@]}")
declare -A name_of=()
while ((${#pending[@]})) || ((${#name_of[@]})); do
  while ((${#pending[@]})) && ((${#name_of[@]} < jobs)); do
    fuzz_one "${pending[0]}" &
    name_of[$!]="${pending[0]}"
    pending=("${pending[@]:1}")
    running=("${!name_of[@]}")
  done
  finished=""
  wait -n -p finished
  status=$?
  [[ -n "$finished" && -n "${name_of[$finished]:-}" ]] || continue
  report "${name_of[$finished]}" "$status"
  unset "name_of[$finished]"
  running=("${!name_of[@]}")
done

if ((${#findings[@]})); then
  printf '[maestra] fuzz: FAILED: %s\n' "$(printf '%s\n' "${findings[@]}" | sort -u | tr '\n' ' ')"
  exit 1
fi
printf '[maestra] fuzz: ok: %s targets, %s s each, no finding\n' "${#targets[@]}" "$seconds"
