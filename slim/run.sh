#!/usr/bin/env bash
# Builds and tests the library without its `remote-keys` feature (see Cargo.toml): lints,
# checks that no HTTP client is in the build, runs the tests. Shares the root's target
# directory (the dependencies both builds have in common compile once).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../target/slim}"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
if cargo tree -e normal -i reqwest >/dev/null 2>&1; then
  echo "slim: reqwest is in the build without remote-keys" >&2
  exit 1
fi
cargo test
