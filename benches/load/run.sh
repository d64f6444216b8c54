#!/usr/bin/env bash
# benches/load/run.sh: the whole-process load comparison of tower-secure (issues 7 and 20)
# in one command. Installs what is missing (wrk from Debian, oha from crates.io), builds the
# bench binaries (release, own target dir), measures the in-process check (criterion,
# benches/layer.rs, pinned to CPU 0), then load-runner runs rounds of every mode, each run
# paired with a no-layer baseline: server pinned to CPU 0, load generator to CPU 1,
# 127.0.0.1 only. Results: benches/load/results/latest.md and latest.json. See README.md.
#
#   benches/load/run.sh                      # the full run: 5 rounds (see README.md for its time)
#   benches/load/run.sh --quick              # development: 3 rounds of 2 s, repeated modes
#   benches/load/run.sh --only basic_cached,bearer_rs256_fresh
#   benches/load/run.sh --no-criterion       # skip the in-process check
#   benches/load/run.sh --help               # every flag
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian() {   # install_debian COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "run.sh: installing $2 (Debian)" >&2
    as_root apt-get update -qq
    as_root apt-get install -y -qq "$2" >/dev/null
  fi
}

install_debian wrk wrk
install_debian taskset util-linux
install_debian openssl openssl
if ! command -v oha >/dev/null 2>&1; then
  echo "run.sh: installing oha 1.16.0 (crates.io; a few minutes, once)" >&2
  cargo install oha --locked --version 1.16.0
  export PATH="$HOME/.cargo/bin:$PATH"
fi

if [ "$(nproc)" -lt 2 ]; then
  echo "run.sh: needs 2 CPUs (server and load generator each get one); this machine has $(nproc)" >&2
  exit 1
fi

echo "run.sh: building (release)" >&2
cargo build --release --quiet --bins

# --no-criterion is run.sh's own flag; everything else goes to load-runner.
criterion=true
args=()
for arg in "$@"; do
  if [ "$arg" = --no-criterion ]; then criterion=false; else args+=("$arg"); fi
done
criterion_args=()
if $criterion; then
  echo "run.sh: the in-process check (cargo bench --bench layer, pinned to CPU 0)" >&2
  (cd ../.. && taskset -c 0 cargo bench --quiet --bench layer -- \
    'in_process/(no_layer|basic_cached_authorized)$|bearer/(no_layer|repeated_token/.*)$' >&2)
  criterion_args=(--criterion "$here/../../target/criterion")
fi

exec ./target/release/load-runner --command "benches/load/run.sh${*:+ $*}" "${criterion_args[@]}" "${args[@]}"
