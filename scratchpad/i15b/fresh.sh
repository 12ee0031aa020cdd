#!/bin/bash
# fresh.sh ROUNDS "name|command with PORT" ... : each round starts each server fresh, 0.5 s after it accepts runs the client 10 s
R=$1; shift; cd "$(dirname "$0")/../.."; export PATH=$PWD/node_modules/node/bin:$PATH; PY=${CHIRAL_REFERENCE_PYTHON:-python3}
port=18950
for r in $(seq $R); do for v in "$@"; do
  port=$((port+1)); name=${v%%|*}; cmd=${v#*|}; cmd=${cmd//PORT/$port}
  bash -c "exec $cmd" >/dev/null 2>&1 & P=$!
  for i in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  kill -0 $P 2>/dev/null || { echo "$name: the server did not start" >&2; continue; }; sleep 0.5
  a=$(awk '{print $14+$15}' /proc/$P/stat)
  out=$(timeout 60 "$PY" apps/cli/src/bench/python/latency_client.py ws://127.0.0.1:$port --hz 30 --seconds 10)
  b=$(awk '{print $14+$15}' /proc/$P/stat); kill $P; wait $P 2>/dev/null
  echo "$name $out cpu $(( (b-a) )) cs"
done; done | tee /tmp/fresh.txt
python3 - <<'PY'
import json, collections, statistics
d = collections.defaultdict(list)
for line in open("/tmp/fresh.txt"):
    name, rest = line.split(" ", 1); js, cpu = rest.rsplit(" cpu ", 1); j = json.loads(js); d[name].append((j["p50_ms"], j["p90_ms"], j["p99_ms"], float(cpu.split()[0])))
for k, v in d.items():
    print(k.ljust(12), "| median p50 %.3f p90 %.3f p99 %.3f cpu %.0f cs" % tuple(statistics.median(x[i] for x in v) for i in range(4)))
PY
