#!/bin/bash
# split.sh NAME PORT "server command" : where a Python client's get_obs goes, server side and client side.
# Starts the server, warms it with the reference client for 10 s, then captures loopback (tcpdump, needs
# root) during a second 10 s run; prints the client's get_obs figures and, from the capture, each
# obs_request packet to the next reply packet (the server's part, ms). The client's part is the rest.
# SPIN / CPIN: prefixes for the server and the client, e.g. SPIN="taskset -c 1" CPIN="taskset -c 0".
# Needs PYTHONPATH with the Python reference and python3-websockets, -msgpack, -numpy (/usr/bin/python3).
cd "$(dirname "$0")/../.."; export PATH=$PWD/node_modules/node/bin:$PATH
name=$1; port=$2; cmd=$3; pcap=$(mktemp --suffix=.pcap)
bash -c "exec $SPIN $cmd" >/dev/null 2>&1 & P=$!
for i in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done; sleep 0.5
kill -0 $P 2>/dev/null || { echo "$name: the server did not start" >&2; exit 1; }
/usr/bin/python3 apps/cli/src/bench/python/latency_client.py ws://127.0.0.1:$port --seconds 10 >/dev/null
tcpdump -i lo -n -tt -B 16384 -w $pcap "tcp port $port" 2>/dev/null & T=$!; sleep 1
out=$($CPIN /usr/bin/python3 apps/cli/src/bench/python/latency_client.py ws://127.0.0.1:$port --seconds 10)
sleep 0.5; kill $T; wait $T 2>/dev/null; kill $P; wait $P 2>/dev/null
server=$(tcpdump -r $pcap -n -tt 2>/dev/null | python3 scratchpad/i15d/pair.py $port); rm -f $pcap
echo "$name client $out server $server"
