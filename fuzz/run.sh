#!/usr/bin/env bash
# Runs fuzz targets for a bounded time with libFuzzer (nightly, AddressSanitizer) and prints
# executions and crashes per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); all targets by default
#   JOBS=2 fuzz/run.sh 600                two targets at a time (one core each)
#
# Each target starts from its seeds (fuzz/corpus/<target>, read only) and keeps what it
# learns in fuzz/work/<target> (gitignored), so later runs continue where earlier ones
# stopped. Crashes land in fuzz/artifacts/<target>/, logs in fuzz/logs/<target>.log.
# Every invariant stops the run. To look past findings that are reported but not fixed
# yet, name them: TOWER_SECURE_FUZZ_KNOWN=id,id (or all; ids in src/known.rs).
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
export TOWER_SECURE_FUZZ_KNOWN=${TOWER_SECURE_FUZZ_KNOWN-}
jobs=${JOBS:-1}

cd ..
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" >/dev/null

mkdir -p "$fuzz_dir/logs"
run_one() {
  local target=$1
  local corpus="$fuzz_dir/work/$target" artifacts="$fuzz_dir/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  local dict=()
  [ -f "$fuzz_dir/dict/$target.dict" ] && dict=("-dict=$fuzz_dir/dict/$target.dict")
  local before started
  before=$(find "$artifacts" -type f | wc -l)
  started=$(date +%s)
  cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" "$fuzz_dir/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}" \
    >"$fuzz_dir/logs/$target.log" 2>&1 || true
  local after execs
  after=$(find "$artifacts" -type f | wc -l)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$fuzz_dir/logs/$target.log" | tail -1 | grep -o '[0-9]*$' || true)
  printf '%-22s %8s s %12s execs %4s crashes\n' "$target" "$(($(date +%s) - started))" "${execs:-?}" "$((after - before))"
}

printf '%-22s %10s %18s %12s\n' target seconds executions crashes
running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
echo "(logs: fuzz/logs/, crashes: fuzz/artifacts/; $(date -u +%Y-%m-%dT%H:%MZ))"
