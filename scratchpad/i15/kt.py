import sys, re, statistics
# kt.py TRACE SERVER_PID: per obs_request of the reference client (a 28-byte sendto), the medians of: client
# send → server wakes (epoll returns), → reads the request, → enters the reply write, → client has read it.
f, spid = sys.argv[1], sys.argv[2]
ev = []
rx = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$')
for l in open(f):
    m = rx.match(l)
    if m: ev.append((float(m.group(5))*1000, m.group(2), m.group(3), m.group(6), m.group(7)))
cpids = {p for (_, p, _, e, a) in ev if e == 'syscalls:sys_enter_sendto' and 'len: 0x0000001c' in a and p != spid}
# server main tid = spid
rows = []
i = 0
n = len(ev)
while i < n:
    t, p, tid, e, a = ev[i]
    if p in cpids and e == 'syscalls:sys_exit_sendto' and a.strip() == '0x1c':
        A = t; B = C = D = E = None; wakes = 0; on = None; sw = 0
        j = i + 1
        while j < n and ev[j][0] - A < 60:
            tj, pj, tidj, ej, aj = ev[j]
            if tidj == spid and B is None and ej.startswith('syscalls:sys_exit_epoll'): B = tj
            if ej == 'sched:sched_switch' and ('next_pid=%s ' % spid) in aj and B is None and on is None: on = tj
            if tidj == spid and C is None and ej in ('syscalls:sys_exit_read', 'syscalls:sys_exit_recvfrom') and aj.strip() == '0x1c': C = tj
            if tidj == spid and C is not None and D is None and ej in ('syscalls:sys_enter_writev', 'syscalls:sys_enter_sendto') : D = tj
            if D is None and C is not None and ej == 'sched:sched_switch' and ('prev_pid=%s ' % spid) in aj: sw += 1
            if pj in cpids and D is not None and ej == 'syscalls:sys_exit_recvfrom' and int(aj.strip(), 16) < 1 << 40 and int(aj.strip(),16) > 1000: E = tj; break
            j += 1
        if None not in (B, C, D, E): rows.append((B - A, C - B, D - C, E - D, E - A, sw))
    i += 1
print(f"{len(rows)} requests; medians (ms): wake {statistics.median(r[0] for r in rows):.3f}  read {statistics.median(r[1] for r in rows):.3f}  process {statistics.median(r[2] for r in rows):.3f}  to-client {statistics.median(r[3] for r in rows):.3f}  total {statistics.median(r[4] for r in rows):.3f}  | p90 process {sorted(r[2] for r in rows)[int(len(rows)*.9)]:.3f} total {sorted(r[4] for r in rows)[int(len(rows)*.9)]:.3f}; descheduled-in-process {sum(1 for r in rows if r[5])}")
