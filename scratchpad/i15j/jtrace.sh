#!/bin/bash
# Where action jitter comes from, traced with perf (root): jtrace.sh HZ [chiral bench flags]
# Runs `chiral bench` (8 cameras by default) with actions at HZ and records, on CLOCK_MONOTONIC, the client's
# action writes (the dispatcher thread's write(2) of one apply_action frame) and the server's reads of them.
# Prints the server-observed jitter (bench JSON), the jitter of the client's writes and of the server's reads
# against their own grid, the write→read delay, and (jclass.py) what the server's main thread was doing while a
# late action waited: runnable (waiting for a core), in writev (copying a reply into the kernel), its own code.
# DIR=checkout to run another build.
cd "$(dirname "$0")/../.."
export PATH=$PWD/node_modules/node/bin:$PATH
hz=$1; shift; out=$(mktemp -d); here=$PWD/scratchpad/i15j
(cd ${DIR:-.} && node apps/cli/dist/main.js bench --action-hz $hz --json "$@" > $out/json 2>$out/err) &
bpid=$!
sleep 4
perf record -q -k mono -a -o $out/perf.data -e sched:sched_switch,sched:sched_wakeup,syscalls:sys_enter_write,syscalls:sys_exit_write,syscalls:sys_enter_writev,syscalls:sys_exit_writev,syscalls:sys_enter_read,syscalls:sys_exit_read,syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_exit_epoll_pwait -- sleep 7 2>/dev/null
wait $bpid
perf script -i $out/perf.data -F comm,pid,tid,cpu,time,event,trace > $out/trace.txt 2>/dev/null
python3 -c "import json;a=json.load(open('$out/json'))['action_cadence'];print('server-observed jitter p50 %.2f p99 %.2f max %.2f ms' % (a['jitter_ms_p50'],a['jitter_ms_p99'],a['jitter_ms_max']))"
python3 $here/jt.py $out/trace.txt $hz | grep -E "jitter|write→read"
python3 $here/jclass.py $out/trace.txt
rm -rf $out
