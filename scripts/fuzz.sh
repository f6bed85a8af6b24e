#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what a stranger can send
# the coordinator — protocol frames, result lists, job requests — and of the
# engine's answers and their verification: every target in fuzz/ for SECONDS
# each (default 60). Installs cargo-fuzz when missing; builds on stable Rust
# (no sanitizer: the code under test has no unsafe). A finding stops the run
# with a non-zero exit and leaves the input in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Seeds (valid examples each target starts from) are in fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-60}
shift || true

cargo_fuzz_version=0.13.2
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
  cargo install cargo-fuzz --version "=$cargo_fuzz_version" --locked >&2
fi
command -v c++ >/dev/null || { echo "fuzz: libFuzzer needs a C++ compiler (apt-get install g++)" >&2; exit 1; }

cd fuzz
cargo fuzz build -s none --release >&2
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
  printf '\033[1m[fuzz]\033[0m %s for %ss\n' "$t" "$seconds" >&2
  # -max_len bounds inputs (frames and bodies of a few KiB reach every branch);
  # the dictionary holds the protocol's and the API's JSON tokens.
  log=$(mktemp)
  status=0
  # New inputs go to corpus/<target> (not kept in git); seeds/<target>
  # holds valid examples (the protocol's documented frames, job bodies).
  dirs=("corpus/$t")
  [[ -d "seeds/$t" ]] && dirs+=("seeds/$t")
  mkdir -p "corpus/$t"
  cargo fuzz run -s none --release "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -max_len=4096 -dict=dict/json.dict -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" >&2 || true
  if [[ $status != 0 ]]; then
    # The failing input is in fuzz/artifacts/<target>/ (libFuzzer names it).
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "fuzz: $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  rm -f "$log"
done
