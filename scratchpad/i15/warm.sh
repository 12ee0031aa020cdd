#!/bin/bash
# Cold against warm: per round and server, the reference client's p50 over the first SECS s after
# the server starts, then (after WARM s more of the same client) over SECS s again.
# Usage: warm.sh ROUNDS SECS WARM 'name|command with @PORT@' ...
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
ROUNDS=$1; SECS=$2; WARM=$3; shift 3; port=26300
for r in $(seq $ROUNDS); do
  for spec in "$@"; do
    name=${spec%%|*}; cmd=${spec#*|}; port=$((port + 1))
    eval "exec ${cmd//@PORT@/$port}" >/dev/null 2>&1 & pid=$!
    for i in $(seq 150); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    cold=$($PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $SECS 2>&1 | tail -1)
    $PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $WARM >/dev/null 2>&1
    warm=$($PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $SECS 2>&1 | tail -1)
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    echo "$name cold $cold warm $warm"
  done
done
