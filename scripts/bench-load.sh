#!/usr/bin/env bash
# Load benchmark of the coordinator against the classic Python manager pattern,
# measured in the same run (tests/benches/load.rs, tests/benches/classic_manager.py).
# Usage: scripts/bench-load.sh [--quick]. Writes docs/load-latest.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
{
  echo "# $(date -u +%Y-%m-%d) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  cargo bench -p crowdfactor-e2e --bench load -- "$@"
} | tee docs/load-latest.txt
