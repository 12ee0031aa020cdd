#!/bin/bash
# segments.sh PORT SECS [serve flags]: chiral serve (2 cameras 64×48 + depth) with instrument.py's timing, against the
# reference Python client at 30 Hz; prints the client's result and the server's per-segment lines.
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
port=$1; secs=$2; shift 2; log=$(mktemp)
node apps/cli/bin/chiral.js serve --host 127.0.0.1 --port $port --cameras 2 --size 64x48 --depth "$@" 2>$log >/dev/null & pid=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3 /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $secs
kill $pid; wait $pid 2>/dev/null; grep instrument $log; rm -f $log
