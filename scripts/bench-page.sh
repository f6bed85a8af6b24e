#!/usr/bin/env bash
# The volunteer page end to end: a headless Chromium tab (one Web Worker per
# core) factors a range job through an in-memory coordinator on this
# machine; prints the job's time from its submission until it reads done
# (polled every 0.1 s).
# Usage: [START=N] [CHUNK_SIZE=N] scripts/bench-page.sh [COUNT [RUNS [SERVER_BINARY...]]]
#   COUNT numbers from START (default 2^64 + 1), step 2 (default 400000);
#   RUNS per binary (default 2); several binaries (e.g. two builds to
#   compare) alternate. CHUNK_SIZE caps the job's chunks (default: none,
#   the coordinator sizes them).
# Needs a release build (scripts/build-wasm.sh, then cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-400000}
runs=${2:-2}
shift $(($# < 2 ? $# : 2))
bins=("$@")
((${#bins[@]})) || bins=(target/release/crowdfactor-server)
token=bench
start=${START:-18446744073709551617}
cap=${CHUNK_SIZE:+, \"chunk_size\": $CHUNK_SIZE}

json() { python3 -c "import sys, json; j = json.load(sys.stdin); print($1)"; }

# The run in progress: its server, its browser and their directory, ended
# after each run and on any exit (a failed request included).
dir="" srv="" chr=""
cleanup() {
  local p
  for p in $chr $srv; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n $dir ]]; then rm -rf "$dir"; fi
  dir="" srv="" chr=""
}
trap cleanup EXIT

one() { # binary
  local url="" id state t0 t1
  dir=$(mktemp -d)
  # A port the system picks, read back from the server's log: a random one
  # could be taken (a fresh run of scripts/test.sh once lost this step to a
  # server that could not listen, and 20 s of polling a closed port).
  timeout 600 "$1" --listen 127.0.0.1:0 --in-memory --token "$token" >"$dir/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$dir/server.log" | head -1 | cut -d' ' -f3 || true)
    [[ -n $url ]] && curl -fsS "$url/api/status" >/dev/null 2>&1 && break
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $url ]]; then
    cat "$dir/server.log" >&2
    cleanup
    echo "$1: the server did not start" >&2
    return 1
  fi
  timeout 600 chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --user-data-dir="$dir/profile" \
    "$url/" >"$dir/chromium.log" 2>&1 &
  chr=$!
  # The tab's Web Workers load the factorizer and wait for work.
  local workers=0
  for _ in $(seq 200); do
    workers=$(curl -fsS "$url/api/status" | json 'j["workers"]' || echo 0)
    [[ -n $workers && $workers != 0 ]] && break
    sleep 0.1
  done
  if [[ -z $workers || $workers == 0 ]]; then
    cleanup
    echo "$1: no tab connected (is chromium installed?)" >&2
    return 1
  fi
  sleep 1
  t0=$(date +%s.%N)
  id=$(curl -fsS -H "Authorization: Bearer $token" -X POST "$url/api/jobs" \
    -d "{\"range\": {\"start\": \"$start\", \"count\": $count, \"step\": 2}$cap}" | json 'j["id"]')
  # (Polled with curl alone: a Python per poll would take CPU from the tab.)
  for _ in $(seq 6000); do
    state=$(curl -fsS -H "Authorization: Bearer $token" "$url/api/jobs/$id" | grep -o '"state":"[a-z]*"')
    [[ $state == '"state":"done"' ]] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  cleanup
  [[ $state == '"state":"done"' ]] || { echo "$1: the job did not finish" >&2; return 1; }
  python3 -c "print(f'$1  $count numbers  {$t1 - $t0:.2f} s')"
}

for _ in $(seq "$runs"); do
  for b in "${bins[@]}"; do one "$b"; done
done
