#!/bin/bash
# Alternating `chiral bench` runs with different node flags for the client (the bench process).
# Usage: ab.sh ROUNDS 'name|node flags|bench args[|checkout]' ...   e.g. ab.sh 2 'base||--protocol zenoh' 'grow|--heap-growing-percent=400|--protocol zenoh'
# One line per run: round trip p50/p99, obs Hz, action jitter p99 (arrived / sent), client GC, rss, faults/obs.
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
ROUNDS=$1; shift
for r in $(seq $ROUNDS); do
  for spec in "$@"; do
    IFS='|' read -r name flags args dir <<< "$spec"
    out=$(node $flags ${dir:-.}/apps/cli/bin/chiral.js bench --duration ${DURATION:-8} $args 2>&1)
    echo "$out" | python3 scratchpad/i15gc/line.py "$name"
  done
done
