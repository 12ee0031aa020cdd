#!/bin/bash
# Alternating rounds of the reference Python client (client_latency.py, 30 Hz) against several servers.
# Usage: ab.sh ROUNDS SECONDS 'name|command with @PORT@' ...   (from anywhere; runs in the repo root)
# Prints one line per run, then per server the median over rounds of p50, p90 and p99, and the server's
# CPU while the client ran (ms per s, all its threads, from /proc/PID/stat).
# PIN=1: each server on CPU 1 and the client on CPU 0 (taskset), so they never share a core.
# e.g. ab.sh 5 10 'python-ref|env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3 /work/ref/py15/server_small.py --port @PORT@' \
#               'chiral|node apps/cli/bin/chiral.js serve --host 127.0.0.1 --port @PORT@ --cameras 2 --size 64x48 --depth' 
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
ROUNDS=$1; SECS=$2; shift 2
port=26140; out=$(mktemp)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for r in $(seq $ROUNDS); do
  for spec in "$@"; do
    name=${spec%%|*}; cmd=${spec#*|}; port=$((port + 1)); [ $port -gt 26180 ] && port=26141
    pin_server=""; pin_client=""; [ -n "$PIN" ] && pin_server="taskset -c 1" && pin_client="taskset -c 0"
    eval "exec $pin_server ${cmd//@PORT@/$port}" >/dev/null 2>&1 & pid=$!
    for i in $(seq 150); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    a=$(cpu $pid)
    res=$($pin_client $PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $SECS 2>&1 | tail -1)
    b=$(cpu $pid)
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    printf "%-14s %s cpu %d\n" "$name" "$res" $(( (b - a) * 10000 / (SECS * 1000) )) | tee -a $out
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    name, _, rest = l.partition(" {")
    js, _, cpu = rest.rpartition(" cpu ")
    try: r = json.loads("{" + js); r["cpu"] = int(cpu)
    except Exception: continue
    d[name.strip()].append(r)
for k, rs in d.items():
    m = lambda f: statistics.median(r[f] for r in rs)
    print(f"{k:14s} median over {len(rs)} rounds: p50 {m('p50_ms'):.2f}  p90 {m('p90_ms'):.2f}  p99 {m('p99_ms'):.2f} ms  cpu {m('cpu'):.0f} ms/s")
PY
rm -f $out
