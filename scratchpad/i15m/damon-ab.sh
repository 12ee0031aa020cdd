#!/bin/bash
# Alternates the platform's DAMON thread on and off between chiral bench runs (root);
# it is switched back on at exit. Restarting it resets its regions: compare rounds, not boots.
# Usage: scratchpad/i15m/damon-ab.sh ROUNDS [chiral bench flags], from the repo root after npm run build.
D=/sys/kernel/mm/damon/admin/kdamonds/0/state
trap 'echo on > $D; cat $D' EXIT
R=$1; shift
for i in $(seq $R); do for st in on off; do
  echo $st > $D 2>/dev/null; sleep 1
  node apps/cli/dist/main.js bench --json --log-level none "$@" 2>/dev/null | python3 -c "
import json,sys; d=json.load(sys.stdin); c=d['action_cadence']; s=d['action_sends']; l=d['server_event_loop']; p=d['action_jitter_by_stream_phase']
print('damon $st', 'jit p50 %.2f p99 %.2f max %.2f | sent p99 %.2f max %.2f | drift %.1f gaps %s | loop p99 %.2f max %.1f wait %.0f | rt p50 %.2f p99 %.2f hz %.1f | kernel %s' % (c['jitter_ms_p50'],c['jitter_ms_p99'],c['jitter_ms_max'],s['jitter_ms_p99'],s['jitter_ms_max'],c['drift_ms'],list(d['action_gaps'].values()),l['timer_ms_p99'],l['timer_ms_max'],l['runqueue_ms_per_s'],d['obs_round_trip_ms']['p50'],d['obs_round_trip_ms']['p99'],d['obs_hz'],d['kernel_threads']))"
done; done
