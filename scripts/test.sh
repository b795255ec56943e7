#!/usr/bin/env bash
# Runs every test of the workspace and ends with one summary line,
# "N passed, N failed", summed over all test binaries (cargo's own last line
# is that of the last doc-test run, often "0 passed").
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log="$root/target/test-output.log"
mkdir -p "$root/target"
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
echo
echo "$(sum passed) passed, $(sum failed) failed"
exit "$status"
