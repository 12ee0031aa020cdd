#!/bin/bash
# chiral bench (8 cameras, actions 30 Hz) with and without glibc keeping freed large buffers, alternating.
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
KEEP="MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824"
for r in 1 2; do for p in websocket zenoh; do for env in "" "$KEEP"; do
  echo "== $p ${env:-default malloc}"
  env $env node apps/cli/bin/chiral.js bench --protocol $p --action-hz 30 --duration 8 --requests 50 2>/dev/null | grep -E "obs round|obs stream|actions at|page faults|client gc"
done; done; done
