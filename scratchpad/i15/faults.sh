#!/bin/bash
# Server minor faults: idle 5 s, then 5 s of the node client at 30 Hz. Usage: faults.sh
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
flt() { awk '{print $10}' /proc/$1/stat; }
one() {
  local name=$1 port=$2; shift 2
  "$@" >/dev/null 2>&1 & local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 2; local a=$(flt $pid); sleep 5; local b=$(flt $pid)
  local r=$(node scratchpad/i15/nodeclient.mjs ws://127.0.0.1:$port 30 5); local c=$(flt $pid)
  echo "$name idle $((b-a)) faults/5s; with client $((c-b)) faults/5s (150 requests) $r"
  kill $pid; wait $pid 2>/dev/null
}
[ -z "$NOPY" ] && one python-ref 26104 $PY /work/ref/py15/server_small.py --port 26104 --cameras 2 --size 64x48
one chiral     26105 node $NODEFLAGS apps/cli/bin/chiral.js serve --host 127.0.0.1 --port 26105 --cameras 2 --size 64x48 --depth
