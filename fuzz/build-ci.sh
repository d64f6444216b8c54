#!/usr/bin/env bash
# CI on stable: builds every fuzz target without sanitizers or coverage instrumentation
# (libfuzzer-sys compiles libFuzzer itself with the C++ compiler, so no nightly is
# needed), then runs each target once over its seeds (fuzz/corpus/<target>): the targets
# build, and their invariants hold on the reviewed inputs.
#
#   fuzz/build-ci.sh                  build + replay the seeds
#   fuzz/build-ci.sh --build-only     build only
#   fuzz/build-ci.sh --lint           also rustfmt --check and clippy -D warnings first (the
#                                     root's `cargo fmt --all` and `clippy --workspace` do
#                                     not see this package)
#   fuzz/build-ci.sh --regressions    also replay fuzz/regressions/ (fails while a reported
#                                     finding is not fixed; see README.md)
#
# Uses fuzz/target (gitignored); the fuzz crate is its own workspace, so the root's
# `cargo test --workspace` never builds it.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

replay=true
regressions=false
lint=false
for arg in "$@"; do
  case "$arg" in
    --build-only) replay=false ;;
    --regressions) regressions=true ;;
    --lint) lint=true ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if $lint; then
  cargo fmt --check
  cargo clippy --locked --all-targets -- -D warnings
fi
cargo build --locked --bins
$replay || exit 0

targets=$(cd fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
# Replays never step over known findings.
unset TOWER_SECURE_FUZZ_KNOWN
replay_dir() {
  local target=$1 dir=$2
  local files=("$dir"/*)
  if [ ! -e "${files[0]}" ]; then
    case "$dir" in corpus/*) echo "no seeds in fuzz/$dir" ;; esac
    return 0
  fi
  # Files as arguments: libFuzzer runs each once and exits (no fuzzing).
  if ! "./target/debug/$target" "${files[@]}" >"target/replay-$target.log" 2>&1; then
    echo "FAILED: $target on $dir (see fuzz/target/replay-$target.log)" >&2
    grep -m1 -A3 "panicked at" "target/replay-$target.log" >&2 || true
    return 1
  fi
  echo "ok: $target, ${#files[@]} inputs from $dir"
}
status=0
for target in $targets; do
  replay_dir "$target" "corpus/$target" || status=1
  if $regressions; then
    replay_dir "$target" "regressions/$target" || status=1
  fi
done
exit $status
