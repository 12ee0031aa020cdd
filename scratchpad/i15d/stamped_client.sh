#!/bin/bash
# stamped_client.sh URI SECONDS OUT: the bench's Python client (apps/cli/src/bench/python/latency_client.py),
# also writing each get_obs as "wall-clock-start-s latency-ms" to OUT (for altsplit.py).
cd "$(dirname "$0")/../.."
sed 's|waits.append((time.perf_counter() - start) \* 1000)|waits.append((time.perf_counter() - start) * 1000); stamps.append((start_wall, waits[-1]))|; s|        start = time.perf_counter()|        start = time.perf_counter(); start_wall = time.time()|; s|^waits = \[\]|waits = []; stamps = []|' \
  apps/cli/src/bench/python/latency_client.py > /tmp/stamped_client.py
cat >> /tmp/stamped_client.py <<'PY'
with open(__import__("os").environ["STAMPS_OUT"], "w") as f:
    for t, w in stamps: f.write(f"{t} {w}\n")
PY
STAMPS_OUT="$3" exec /usr/bin/python3 /tmp/stamped_client.py "$1" --seconds "$2"
