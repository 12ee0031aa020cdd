import sys, re, statistics
# kt2.py TRACE SERVER_PID: splits each get_obs of the reference client into the client's part before
# its request (main thread's wake-up of the loop thread → the request's sendto), the round trip
# seen from the client's loop thread (sendto → reply's recvfrom), and the client's part after
# (recvfrom → its main thread back on a CPU); and, while a client thread was runnable but not running,
# who held the CPU.
f, spid = sys.argv[1], sys.argv[2]
rx = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$')
ev = []
for l in open(f):
    m = rx.match(l)
    if m: ev.append((float(m.group(5))*1000, m.group(1), m.group(2), m.group(3), int(m.group(4)), m.group(6), m.group(7)))
loop_tid = next(t for (_, c, p, t, cpu, e, a) in ev if e == 'syscalls:sys_enter_sendto' and 'len: 0x0000001c' in a and p != spid)
cpid = next(p for (_, c, p, t, cpu, e, a) in ev if t == loop_tid)
main_tid = cpid
rows = []; waits = {}
n = len(ev)
for i, (t, c, p, tid, cpu, e, a) in enumerate(ev):
    if tid == main_tid and e == 'syscalls:sys_enter_sendto' and 'len: 0x00000001' in a:
        S = t; Q = E = R = None; j = i + 1
        while j < n and ev[j][0] - S < 50:
            tj, cj, pj, tidj, cpuj, ej, aj = ev[j]
            if Q is None and tidj == loop_tid and ej == 'syscalls:sys_enter_sendto' and 'len: 0x0000001c' in aj: Q = tj
            if Q is not None and E is None and tidj == loop_tid and ej == 'syscalls:sys_exit_recvfrom' and 1000 < int(aj.strip(), 16) < 1 << 40: E = tj
            if E is not None and ej == 'sched:sched_switch' and ('next_pid=%s ' % main_tid) in aj: R = tj; break
            j += 1
        if None not in (Q, E, R): rows.append((Q - S, E - Q, R - E, R - S, i, j))
med = lambda k: statistics.median(r[k] for r in rows)
print(f"{len(rows)} get_obs; medians (ms): client before {med(0):.3f}  round trip {med(1):.3f}  client after {med(2):.3f}  total {med(3):.3f}")
# runnable-but-waiting time of the client's threads within get_obs windows, by who held that CPU
wake = {}; held = {}
running = {}
for (i0, j0) in ((r[4], r[5]) for r in rows):
    pend = {}
    for k in range(i0, j0 + 1):
        t, c, p, tid, cpu, e, a = ev[k]
        if e == 'sched:sched_wakeup':
            m = re.search(r'pid=(\d+) .*target_cpu=(\d+)', a)
            if m and m.group(1) in (main_tid, loop_tid): pend[m.group(1)] = (t, int(m.group(2)))
        if e == 'sched:sched_switch':
            m = re.search(r'prev_comm=(.*?) prev_pid=(\d+) .*next_comm=(.*?) next_pid=(\d+)', a)
            if not m: continue
            nxt = m.group(4)
            if nxt in pend:
                t0, cpu0 = pend.pop(nxt)
                who = m.group(1) if m.group(2) != '0' else 'idle'
                if m.group(2) == spid: who = 'SERVER-main'
                held[who] = held.get(who, 0) + (t - t0)
tot = sum(held.values())
print("client threads runnable→running, summed over get_obs windows (ms), by the thread that ran before: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(held.items(), key=lambda x: -x[1])[:8]) + f"  (total {tot:.1f})")
