#!/bin/bash
# Kernel timeline of the reference Python client against one server, per obs_request (perf tracepoints,
# system-wide, needs root): client send → server wakes → reads the request → writes the reply → client
# has read it. Usage: ktrace.sh py|node PORT SECONDS [node flags]   (DIR=checkout for another build)
# Prints the medians (kt.py). The tracing itself adds some µs per syscall: compare runs of this script only.
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
PY="env PYTHONPATH=/work/ref/chiral:/work/ref/pyshim /usr/bin/python3"
which=$1; port=$2; secs=$3; shift 3; out=$(mktemp -d)
if [ "$which" = py ]; then $PY /work/ref/py15/server_small.py --port $port --cameras 2 --size 64x48 >/dev/null 2>&1 &
else node "$@" ${DIR:-.}/apps/cli/bin/chiral.js serve --host 127.0.0.1 --port $port --cameras 2 --size 64x48 --depth >/dev/null 2>&1 & fi
pid=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sleep 1
$PY /work/ref/py15/client_latency.py ws://127.0.0.1:$port --hz 30 --seconds $((secs + 3)) > $out/client &
cpid=$!
sleep 2
perf record -q -a -o $out/perf.data -e syscalls:sys_enter_sendto,syscalls:sys_exit_sendto,syscalls:sys_enter_writev,syscalls:sys_exit_writev,syscalls:sys_exit_read,syscalls:sys_exit_recvfrom,syscalls:sys_exit_epoll_wait,syscalls:sys_exit_epoll_pwait,sched:sched_wakeup,sched:sched_switch -- sleep $secs 2>/dev/null
wait $cpid
perf script -i $out/perf.data -F comm,pid,tid,cpu,time,event,trace > $out/trace.txt 2>/dev/null
kill $pid; wait $pid 2>/dev/null
echo "$which ${DIR:-.} $*: $(cat $out/client)"
python3 "$(dirname "$0")/kt.py" $out/trace.txt $pid
[ -n "$KEEP" ] && cp $out/trace.txt $KEEP; rm -rf $out
