# jt.py TRACE HZ: from a perf script of jtrace.sh, the jitter of the client dispatcher's action writes and of the
# server's reads of them, each against its own grid at HZ, and the write→read delay (ms).
import sys, re, statistics
f, hz = sys.argv[1], float(sys.argv[2]); period = 1000/hz
rx = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+(?:\[\d+\]\s+)?([\d.]+):\s+(\S+):\s*(.*)$')
ev=[]
for l in open(f):
    m = rx.match(l)
    if m: ev.append((float(m.group(4))*1000, m.group(2), m.group(3), m.group(5), m.group(6)))
# action writes: sys_enter_write with small count from a non-main thread of some node process
writes = {}
for t,p,tid,e,a in ev:
    if e=='syscalls:sys_enter_write' and p!=tid:
        m = re.search(r'count: 0x([0-9a-f]+)', a)
        if m and 50 < int(m.group(1),16) < 400: writes.setdefault((p,tid,int(m.group(1),16)),[]).append(t)
for k,v in writes.items(): print('writer', k, len(v))
key = max(writes, key=lambda k: len(writes[k])); W = writes[key]; size = key[2]
print('action frame bytes', size)
# server reads returning that size
reads = {}
for t,p,tid,e,a in ev:
    if e=='syscalls:sys_exit_read' and p!=key[0]:
        m = re.search(r'0x([0-9a-f]+)\s*$', a)
        if m and int(m.group(1),16) == size: reads.setdefault((p,tid),[]).append(t)
rkey = max(reads, key=lambda k: len(reads[k])); R = reads[rkey]
print('server reader', rkey, len(R), 'writes', len(W))
def jit(ts):
    res = [t - (ts[0] + k*period) for k,t in enumerate(ts)]
    med = statistics.median(res); d = sorted(abs(r-med) for r in res)
    return d[len(d)//2], d[int(len(d)*0.99)], d[-1]
print('write jitter p50/p99/max %.2f %.2f %.2f' % jit(W))
print('read  jitter p50/p99/max %.2f %.2f %.2f' % jit(R))
# pair reads to writes: first read after each write
lat=[]; j=0
for w in W:
    while j < len(R) and R[j] < w: j+=1
    if j < len(R): lat.append(R[j]-w)
lat.sort(); print('write→read p50/p99/max %.2f %.2f %.2f' % (lat[len(lat)//2], lat[int(len(lat)*0.99)], lat[-1]))
