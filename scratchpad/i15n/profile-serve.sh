#!/bin/sh
# Where chiral serve's CPU goes while the Python reference client runs at 30 Hz:
# perf record (cpu-clock, 10 kHz) of the serve process started with
# --perf-basic-prof, during a warmed client run. Output: /tmp/i15n-serve.perf.txt
# usage: profile-serve.sh [seconds]   (PYTHONPATH etc. as for npm run bench)
S=${1:-20}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=19290
node --perf-basic-prof "$ROOT/apps/cli/bin/chiral.js" serve --host 127.0.0.1 --port $PORT --cameras 2 --size 64x48 --depth >/dev/null 2>&1 &
PID=$!
sleep 2
$CHIRAL_REFERENCE_PYTHON "$ROOT/apps/cli/src/bench/python/latency_client.py" ws://127.0.0.1:$PORT --seconds 10
$CHIRAL_REFERENCE_PYTHON "$ROOT/apps/cli/src/bench/python/latency_client.py" ws://127.0.0.1:$PORT --seconds $S &
C=$!
sleep 1
perf record -F 10000 -e cpu-clock -g -p $PID -o /tmp/i15n-serve.data -- sleep $((S - 2)) 2>/dev/null
wait $C
kill $PID
perf report -i /tmp/i15n-serve.data --no-children --sort comm,dso,sym --stdio 2>/dev/null | grep -v "^$" | grep "%" | head -80 > /tmp/i15n-serve.perf.txt
perf report -i /tmp/i15n-serve.data --no-children --sort comm --stdio 2>/dev/null | grep "%" > /tmp/i15n-serve.threads.txt
