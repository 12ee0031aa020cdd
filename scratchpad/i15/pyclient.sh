#!/bin/bash
# Python reference client against the Python reference server and `chiral serve`
# (2 cameras 64x48 + depth), alternating rounds. Usage: pyclient.sh [rounds] [seconds]
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
ROUNDS=${1:-2}; SECS=${2:-10}
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
run() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >/dev/null 2>&1 & local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  echo "$name $($PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $SECS 2>&1 | tail -1)"
  kill $pid; wait $pid 2>/dev/null
}
for r in $(seq $ROUNDS); do
  run "python-ref" 26101 $PY /work/ref/py15/server_small.py --port 26101 --cameras 2 --size 64x48
  run "chiral    " 26102 node apps/cli/bin/chiral.js serve --host 127.0.0.1 --port 26102 --cameras 2 --size 64x48 --depth
done
