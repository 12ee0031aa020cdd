#!/bin/bash
# Alternating chiral bench runs (8 cameras 640x480 + depth) of this branch: fresh vs recycled receive
# buffers, with and without --external-memory-accounted-in-global-limit (NOFLAG: a debugging hook in
# apps/cli/dist/V8Flags.js only). Usage: ab2.sh ROUNDS PROTOCOLS...
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
ROUNDS=${1:-2}; shift; PROTOS=${@:-websocket zenoh}
one() { # label args...
  local label=$1; shift
  node apps/cli/bin/chiral.js bench --duration 8 --requests 50 "$@" 2>/dev/null |
    awk -v l="$label" '/obs round trip/{rt=$5" / "$11} /obs stream/{hz=$3} /^actions at/{for(i=1;i<=NF;i++) if($i=="p99"){jit=$(i+1); break}}
      /client gc/{gc=$4" pauses "$6" ms"} /page faults/{f=$6" "$8} /^rss/{rss=$3"->"$5}
      END{printf "%-30s rt p50/p99 %s ms | %s Hz | jit p99 %s | gc %s | flt/obs %s | rss %s\n", l, rt, hz, jit, gc, f, rss}'
}
for r in $(seq $ROUNDS); do for p in $PROTOS; do
  one "$p fresh" --protocol $p
  MAXFREE=4 one "$p recycled" --protocol $p --receive-buffers recycled
  NOFLAG=1 one "$p fresh noflag" --protocol $p
  NOFLAG=1 MAXFREE=4 one "$p recycled noflag" --protocol $p --receive-buffers recycled
done; done
