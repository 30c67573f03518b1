#!/usr/bin/env bash
# Runs each fuzz target (reply reader, listing parsers, 227/229 parsers) for a bounded time with
# cargo-fuzz and libFuzzer. Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
# cargo-fuzz passes nightly-only flags (sanitizers); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in reply listing passive; do
    echo "fuzz: $target for ${secs}s"
    cargo fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
