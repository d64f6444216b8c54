#!/usr/bin/env bash
# benches/load/profile.sh: where a mode's extra CPU per request goes, against the no-layer
# app, in the whole process. Starts load-server in MODE and in `none` (each pinned to CPU 0),
# drives each with wrk on CPU 1 (one thread, 64 connections, the same Authorization header),
# records the server with `perf record -g` over the measured load, then prints CPU µs per
# request by binary (kernel, libc, the server) and the symbols that grew most. Needs perf,
# wrk and the release binaries and data of run.sh (run it once first).
#
#   benches/load/profile.sh basic "Basic $(printf alex:alex123 | base64)"
#   benches/load/profile.sh bearer "Bearer $(head -1 target/load-data/tokens/rs256.txt)"
#
# perf's own sampling slows both runs alike; read the differences, not the absolute times.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
mode="${1:?usage: profile.sh MODE AUTHORIZATION [SECONDS]}"
auth="${2:?usage: profile.sh MODE AUTHORIZATION [SECONDS]}"
seconds="${3:-5}"
out="$(mktemp -d)"
path="/api/users/v1/42/challenges"

# profile_one MODE: perf data in $out/MODE.data, wrk's request count in $out/MODE.requests.
profile_one() {
  taskset -c 0 ./target/release/load-server "$1" --data target/load-data >"$out/$1.url" 2>"$out/$1.log" &
  local server=$!
  for _ in $(seq 100); do [ -s "$out/$1.url" ] && break; sleep 0.1; done
  local url
  url="$(head -1 "$out/$1.url")"
  taskset -c 1 wrk -t1 -c64 -d1s -H "Authorization: $auth" "$url$path" >/dev/null
  perf record -q -F 4999 -g -p "$server" -o "$out/$1.data" -- sleep "$((seconds + 1))" 2>/dev/null &
  local recorder=$!
  sleep 0.2
  taskset -c 1 wrk -t1 -c64 -d"${seconds}s" -H "Authorization: $auth" "$url$path" |
    awk '/requests in/ {print $1}' >"$out/$1.requests"
  wait "$recorder"
  kill "$server"
  wait "$server" 2>/dev/null || true
  perf report -i "$out/$1.data" --no-children --sort dso,sym -g none 2>/dev/null |
    awk '/^ +[0-9.]+%/ {p=$1; sub("%","",p); $1=""; print p "\t" $0}' >"$out/$1.symbols"
}

profile_one "$mode"
profile_one none

python3 - "$out" "$mode" "$seconds" <<'EOF'
import collections, sys
out, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
def load(name):
    requests = int(open(f"{out}/{name}.requests").read().split()[0])
    # The server is pinned to one busy core: its CPU time over the load is about `seconds`.
    per_request = seconds / requests * 1e6
    rows = collections.Counter()
    for line in open(f"{out}/{name}.symbols"):
        share, symbol = line.rstrip("\n").split("\t", 1)
        rows[symbol.strip()] += float(share) / 100 * per_request
    return requests, rows
(n_mode, with_layer), (n_none, without) = load(mode), load("none")
print(f"{mode}: {n_mode} requests, {seconds / n_mode * 1e6:.2f} µs/req; none: {n_none}, {seconds / n_none * 1e6:.2f} µs/req")
by_binary = collections.defaultdict(lambda: [0.0, 0.0])
for index, rows in enumerate((with_layer, without)):
    for symbol, us in rows.items():
        by_binary[symbol.split()[0]][index] += us
print("\nCPU µs per request by binary: with, without, difference")
for binary, (a, b) in sorted(by_binary.items(), key=lambda kv: -kv[1][0]):
    print(f"  {binary:22s} {a:6.2f} {b:6.2f} {a - b:+6.2f}")
print("\nsymbols that grew most (µs per request):")
grown = sorted(set(with_layer) | set(without), key=lambda s: without[s] - with_layer[s])
for symbol in grown[:30]:
    print(f"  {with_layer[symbol] - without[symbol]:+6.3f}  {symbol[:110]}")
EOF
echo "profile.sh: perf data and symbol lists in $out" >&2
