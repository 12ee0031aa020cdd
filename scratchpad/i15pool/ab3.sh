#!/bin/bash
# Alternating chiral bench runs (8 cameras 640x480 + depth, obs 30 Hz, actions 10 Hz, 8 s):
# main's build, and this branch with --receive-buffers fresh / recycled. Usage: ab3.sh ROUNDS PROTOCOLS...
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
ROUNDS=${1:-2}; shift; PROTOS=${@:-websocket zenoh}
one() { # label dir args...
  local label=$1 dir=$2; shift 2
  (cd $dir && node apps/cli/bin/chiral.js bench --duration 8 --requests 50 "$@" 2>/dev/null) |
    awk -v l="$label" '/obs round trip/{rt=$5" / "$11} /obs stream/{hz=$3} /^actions at/{for(i=1;i<=NF;i++) if($i=="p99"){jit=$(i+1); break}}
      /client gc/{gc=$4" / "$6" ms"} /page faults/{f=$6" "$8} /^rss/{rss=$3"->"$5}
      END{printf "%-22s rt p50/p99 %s ms | %s Hz | jit p99 %s | gc %s | flt/obs %s | rss %s\n", l, rt, hz, jit, gc, f, rss}'
}
for r in $(seq $ROUNDS); do for p in $PROTOS; do
  one "$p main" /work/main --protocol $p
  one "$p fresh" . --protocol $p --receive-buffers fresh
  one "$p recycled" . --protocol $p --receive-buffers recycled
done; done
