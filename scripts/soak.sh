#!/usr/bin/env bash
# Randomized crash soak: a coordinator on an SQLite database and two native
# workers, `kill -9`ed at random moments (the server restarted on the same
# file at once or a little later, a worker restarted at once) until five
# jobs are done; then every result is checked: each job's numbers in order,
# each once, every factor list the same as `crowdfactor-worker factor`'s
# (the engine, tested against GNU factor) and a sample of each job the same
# as GNU `factor`'s. Exit 0 when all are right.
# Usage: scripts/soak.sh [MAX_ROUNDS]   (default 400; a round is 0.1-1.5 s)
# scripts/test.sh runs it once (the fault tests there kill at fixed moments).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rounds=${1:-400}
cargo build --release -q -p crowdfactor-server -p crowdfactor-worker
bin=$PWD/target/release
dir=$(mktemp -d)
cleanup() {
  pkill -9 -f "$dir/" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export CROWDFACTOR_TOKEN=soak CROWDFACTOR_URL=$url
# Copies of the binaries in the soak's directory, so that `pkill -f` finds
# this soak's processes and nothing else.
cp "$bin/crowdfactor-server" "$bin/crowdfactor-worker" "$dir/"
server() {
  "$dir/crowdfactor-server" --listen "127.0.0.1:$port" --db "$dir/soak.db" --lease-timeout 5 >>"$dir/server.log" 2>&1 &
  disown
}
worker() {
  "$dir/crowdfactor-worker" --server "$url" --threads 1 --name "w$1" >>"$dir/worker$1.log" 2>&1 &
  disown
}
rand() { python3 -c "import random; print(round(random.uniform($1, $2), 2))"; }
done_jobs() { "$dir/crowdfactor-server" jobs 2>/dev/null | grep -c ' done ' || true; }

server
for _ in $(seq 50); do curl -s -o /dev/null "$url/" && break; sleep 0.1; done
python3 -c '
import random
r = random.Random(75)
print("\n".join(str(r.getrandbits(64) | 1) for _ in range(20000)))' >"$dir/list.txt"
# The submit arguments of each job; the checker below rebuilds the numbers.
jobs=(
  "--range 999999999999 3000000 --step 2"
  "--file $dir/list.txt"
  "--range 18446744073709551617 500000 --step 2"
  "--range 1267650600228229401496703205377 100000 --step 2"
  "--range 1 50000 --chunk-size 7"
)
for args in "${jobs[@]}"; do
  # shellcheck disable=SC2086
  "$dir/crowdfactor-server" submit $args >/dev/null
done
worker 1
worker 2
kills=0 wkills=0 round=0
while ((round < rounds)) && (($(done_jobs) < ${#jobs[@]})); do
  round=$((round + 1))
  sleep "$(rand 0.1 1.5)"
  if ((RANDOM % 3)); then
    pkill -9 -f "^$dir/crowdfactor-server --listen" || true
    kills=$((kills + 1))
    sleep "$(rand 0 0.8)"
    server
  else
    w=$((RANDOM % 2 + 1))
    pkill -9 -f "^$dir/crowdfactor-worker --server $url --threads 1 --name w$w\$" || true
    wkills=$((wkills + 1))
    worker "$w"
  fi
done
echo "soak: $round rounds, the server killed $kills times, a worker $wkills times"
for _ in $(seq 300); do (($(done_jobs) >= ${#jobs[@]})) && break; sleep 1; done
"$dir/crowdfactor-server" jobs
for i in $(seq ${#jobs[@]}); do
  "$dir/crowdfactor-server" results "$i" --format csv -o "$dir/r$i.csv"
done
echo "since the server's last start:"
curl -s -H "Authorization: Bearer soak" "$url/metrics" | grep -E '^crowdfactor_chunks_(requeued|rejected)_total|^crowdfactor_numbers_factored_total' || true
if grep -E ' (WARN|ERROR) ' "$dir/server.log"; then echo "soak: the server logged the warnings or errors above"; fi
python3 - "$dir" <<'EOF'
import random, subprocess, sys
d = sys.argv[1]
jobs = {
    1: range(999999999999, 999999999999 + 2 * 3000000, 2),
    2: [int(x) for x in open(f'{d}/list.txt').read().split()],
    3: range(18446744073709551617, 18446744073709551617 + 2 * 500000, 2),
    4: range(1267650600228229401496703205377, 1267650600228229401496703205377 + 2 * 100000, 2),
    5: range(1, 50001),
}
rng = random.Random(7)
ok = True
for j, numbers in jobs.items():
    lines = open(f'{d}/r{j}.csv').read().splitlines()
    rows = [l.split(',') for l in lines[1:]]
    if lines[0] != 'n,factors' or [int(r[0]) for r in rows] != list(numbers):
        print(f'job {j}: {len(rows)} rows, not its {len(numbers)} numbers in order')
        ok = False
        continue
    got = [f'{r[0]}: {r[1]}'.rstrip() for r in rows]
    text = '\n'.join(map(str, numbers)) + '\n'
    engine = subprocess.run([f'{d}/crowdfactor-worker', 'factor'], input=text,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    wrong = sum(a != b for a, b in zip(got, engine)) + abs(len(got) - len(engine))
    # GNU factor can take minutes on a 101-bit number with two large
    # factors: of those, only numbers whose other factors are below 2^32.
    pool = [i for i, r in enumerate(rows) if j != 4 or all(int(f) < 1 << 32 for f in r[1].split()[:-1])]
    sample = rng.sample(pool, min(200 if j == 4 else 2000, len(pool)))
    gnu = subprocess.run(['factor'], input='\n'.join(str(numbers[i]) for i in sample) + '\n',
                         capture_output=True, text=True, check=True).stdout.splitlines()
    gnu_wrong = sum(got[i] != g for i, g in zip(sample, gnu)) + abs(len(sample) - len(gnu))
    print(f'job {j}: {len(rows)} numbers in order, each once; {wrong} lists differ from '
          f'the engine, {gnu_wrong} of {len(sample)} from GNU factor')
    ok = ok and wrong == 0 and gnu_wrong == 0
print('soak: every result right' if ok else 'soak: WRONG RESULTS')
sys.exit(0 if ok else 1)
EOF
