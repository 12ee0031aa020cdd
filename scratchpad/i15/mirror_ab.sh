# Alternating rounds: Python reference server, chiral serve, the same robot in chiral-ts (mirror); the reference's client, 10 s each.
cd "$(dirname "$0")/../.."; export PATH=$PWD/node_modules/node/bin:$PATH
# PYTHONPATH: the Python reference (and a placeholder zenoh module), as for npm run bench
: "${PYTHONPATH:?set PYTHONPATH to the Python reference}"
port=19830
run() { # name, command... (the port is appended)
  local name=$1; shift
  port=$((port+1))
  "$@" $port > /dev/null 2>&1 & local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  local out=$(/usr/bin/python3 apps/cli/src/bench/python/latency_client.py ws://127.0.0.1:$port --seconds 10)
  kill $pid; wait $pid 2>/dev/null
  echo "$name $out"
}
for r in $(seq ${1:-3}); do
  run python /usr/bin/python3 apps/cli/src/bench/python/reference_server.py --port
  run serve node apps/cli/bin/chiral.js serve --host 127.0.0.1 --cameras 2 --size 64x48 --depth --port
  run mirror node scratchpad/i15/mirror_server.mjs
done
