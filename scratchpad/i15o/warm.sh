#!/bin/bash
# usage: warm.sh NAME RUNS SECONDS [node flags...]: chiral serve (small robot) fresh
# per run, the Python reference client for SECONDS from start, hook output to /tmp/warm.txt
name=$1; runs=$2; secs=$3; shift 3
root=/work/main
for r in $(seq $runs); do
  port=$((19300 + RANDOM % 500))
  STAMP_NAME="$name run $r" STAMP_OUT=/tmp/warm.txt node "$@" --import=$root/scratchpad/i15o/warm-hook.mjs $root/apps/cli/bin/chiral.js serve --host 127.0.0.1 --port $port --cameras 2 --size 64x48 --depth ${SERVE_ARGS:-} >/dev/null 2>>/tmp/warm-err.txt &
  pid=$!
  until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done
  sleep ${IDLE:-0.5}
  [ -n "$PREWARM" ] && node $root/scratchpad/i15o/prewarm.mjs $port $PREWARM
  for c in $(seq ${CLIENT_RUNS:-1}); do
  /usr/bin/python3 $root/apps/cli/src/bench/python/latency_client.py ws://127.0.0.1:$port --seconds $secs | tail -1 | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("client p50", d["p50_ms"])'
  done
  kill -TERM $pid; wait $pid
done
