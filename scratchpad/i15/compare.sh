#!/bin/bash
# Usage: compare.sh CLIENT rounds seconds — CLIENT: py (reference client) or node (nodeclient.mjs)
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
CL=${1:-py}; ROUNDS=${2:-2}; SECS=${3:-10}
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
client() { if [ $CL = py ]; then $PY /work/ref/py15/client_latency.py $1 --hz 30 --seconds $SECS; else node scratchpad/i15/nodeclient.mjs $1 30 $SECS; fi; }
run() {
  local name=$1 port=$2; shift 2
  "$@" >/dev/null 2>${ERR:-/dev/null} & local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  echo "$name $(client ws://127.0.0.1:$port 2>&1 | tail -1)"
  kill $pid; wait $pid 2>/dev/null
}
for r in $(seq $ROUNDS); do
  [ -z "$NOPY" ] && run "python-ref" 26101 $PY /work/ref/py15/server_small.py --port 26101 --cameras 2 --size 64x48
  run "chiral    " 26102 node $NODEFLAGS apps/cli/bin/chiral.js serve --host 127.0.0.1 --port 26102 --cameras 2 --size 64x48 --depth
  [ -n "$ALTARGS" ] && run "chiral $ALTARGS" 26103 node apps/cli/bin/chiral.js serve --host 127.0.0.1 --port 26103 --cameras 2 --size 64x48 --depth $ALTARGS
done
