#!/bin/bash
# Alternating chiral bench runs (8 cameras 640x480 + depth, obs 30 Hz, actions 10 Hz):
# main's build (fresh memory) and this branch with --receive-buffers fresh / recycled,
# MAXFREE (a debugging hook in dist only) the free buffers kept. Usage: ab.sh ROUNDS PROTOCOLS...
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
ROUNDS=${1:-2}; shift; PROTOS=${@:-websocket zenoh}
one() { # label dir args...
  local label=$1 dir=$2; shift 2
  local out; out=$( (cd $dir && node apps/cli/bin/chiral.js bench --duration 8 --requests 50 --json "$@" 2>/dev/null) | tail -1)
  node -e '
    const r = JSON.parse(process.argv[1]); const l = process.argv[2]
    console.log([l.padEnd(28), "rt p50", r.obs_round_trip_ms.p50, "p99", r.obs_round_trip_ms.p99, "| obs Hz", r.obs_hz,
      "| jit p99", r.action_cadence.jitter_ms_p99, "| flt/obs", r.page_faults_per_obs.client, "/", r.page_faults_per_obs.server,
      "| rss", r.rss_mb.start, "->", r.rss_mb.end].join(" "))' "$out" "$label" 2>/dev/null || echo "$label failed: $out"
}
for r in $(seq $ROUNDS); do for p in $PROTOS; do
  [ -n "$MAIN" ] && one "$p main(fresh)" /work/main --protocol $p
  one "$p fresh" . --protocol $p --receive-buffers fresh
  for m in ${SIZES:-4 8}; do MAXFREE=$m one "$p recycled maxFree=$m" . --protocol $p --receive-buffers recycled; done
done; done
