#!/usr/bin/env bash
# Runs crowdfactor: builds everything (installing the toolchain if needed),
# starts the coordinator and one native worker, submits the classic demo job
# if the server has none, and prints the URL to open. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
listen="${CROWDFACTOR_LISTEN:-127.0.0.1:8080}"
db="${CROWDFACTOR_DB:-crowdfactor.db}"

scripts/setup.sh
scripts/build-wasm.sh >/dev/null
cargo build --release --bins

target/release/crowdfactor-server --listen "$listen" --db "$db" &
server=$!
worker=""
trap 'kill $worker $server 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
  curl -fsS "http://$listen/api/status" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "crowdfactor-server failed to start" >&2; exit 1; }
  sleep 0.1
done
token="${CROWDFACTOR_TOKEN:-$(cat "$db.token")}"
auth=(-H "Authorization: Bearer $token")
if [[ "$(curl -fsS "${auth[@]}" "http://$listen/api/jobs")" == '{"jobs":[]}' ]]; then
  curl -fsS "${auth[@]}" -X POST "http://$listen/api/jobs" \
    -d '{"range": {"start": "999999999999", "count": 1000, "step": 2}}' >/dev/null
  echo "submitted the classic demo job: 1000 odd numbers from 999999999999" >&2
fi
target/release/crowdfactor-worker --server "ws://$listen/ws" &
worker=$!
cat >&2 <<MSG

  crowdfactor is running.
    volunteer page:  http://$listen/   (open it in a browser to contribute)
    API token:       $token   (stored in $db.token)
    jobs:            curl -H 'Authorization: Bearer $token' http://$listen/api/jobs
    submit:          curl -H 'Authorization: Bearer $token' -X POST http://$listen/api/jobs -d '{"numbers": ["1000000000001"]}'
  Ctrl-C stops the server and the worker.

MSG
wait $server
