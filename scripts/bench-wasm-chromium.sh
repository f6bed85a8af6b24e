#!/usr/bin/env bash
# The wasm factorizer in headless Chromium: the standard build and the build
# for the wide-arithmetic proposal (Chromium needs --js-flags=--wasm-wide-arithmetic
# for it), against the native engine, on the `tune` classes (same numbers).
# Usage: scripts/bench-wasm-chromium.sh [CLASS...]; needs web/pkg (build-wasm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if (($#)); then classes=("$@"); else classes=(seed random64 semi28 semi32 random90 'r2^64'); fi
[[ -f web/pkg/crowdfactor_wasm_wide_bg.wasm ]] || { echo "run scripts/build-wasm.sh first" >&2; exit 1; }
cargo build --release -q -p crowdfactor-factor --example tune
dir=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
cp -r web/pkg "$dir/pkg"
cp scripts/bench-wasm-chromium.html "$dir/bench.html"
printf '%s\n' "${classes[@]}" > "$dir/classes.txt"
declare -A native
for c in "${classes[@]}"; do
  target/release/examples/tune dump "$c" > "$dir/$c.txt"
  # `tune CLASS` prints "CLASS  <time> <unit>".
  native[$c]=$(target/release/examples/tune "$c" | awk '{ v = $2; if ($3 == "µs") v *= 1000; if ($3 == "ms") v *= 1e6; printf "%.0f", v }')
done
# Port 0: the system picks a free one, which the server says it serves on.
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$dir" >"$dir/http.log" 2>&1 &
server=$!
port=
for _ in $(seq 100); do
  port=$(grep -o -m1 'port [0-9]*' "$dir/http.log" | cut -d' ' -f2) && [[ -n $port ]] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
[[ -n $port ]] || { echo "the page's HTTP server did not start:" >&2; cat "$dir/http.log" >&2; exit 1; }
run() { # variant, extra chromium switches...
  local variant=$1 log="$dir/$1.log"
  shift
  chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --user-data-dir="$dir/profile-$variant" \
    --enable-logging=stderr --v=0 "$@" "http://127.0.0.1:$port/bench.html?v=$variant" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do grep -q 'BENCH' "$log" && break; sleep 0.5; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -o 'BENCH [^"]*' "$log" | head -1
}
standard=$(run standard)
wide=$(run wide --js-flags=--wasm-wide-arithmetic)
printf '%-10s %12s %14s %14s %10s %10s\n' class native standard wide std/nat wide/nat
for c in "${classes[@]}"; do
  s=$(grep -o "$c=[0-9]*" <<< "$standard" | cut -d= -f2)
  w=$(grep -o "$c=[0-9]*" <<< "$wide" | cut -d= -f2)
  n=${native[$c]}
  awk -v c="$c" -v n="$n" -v s="$s" -v w="$w" 'BEGIN {
    printf "%-10s %9.0f ns %11.0f ns %11.0f ns %9.2fx %9.2fx\n", c, n, s, w, s / n, w / n }'
done
