# jclass.py TRACE: for each action the server read more than 1 ms after the client wrote it, how the server's main
# thread spent that time (runnable = waiting for a core; sys:writev = copying a reply into the kernel; user = its own code).
import re,sys,collections
rx = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+(?:\[(\d+)\]\s+)?([\d.]+):\s+(\S+):\s*(.*)$')
ev=[]
for l in open(sys.argv[1]):
    m=rx.match(l)
    if m: ev.append((float(m.group(5))*1000,m.group(1),m.group(2),m.group(3),m.group(6).split(':')[1],m.group(7)))
# client action writes: write of 0xd9 from a non-main thread
W=[(t,p) for t,c,p,tid,e,a in ev if e=='sys_enter_write' and p!=tid and 'count: 0x000000d9' in a]
cpid=W[0][1]; W=[t for t,_ in W]
R=[(t,p) for t,c,p,tid,e,a in ev if e=='sys_exit_read' and p==tid and p!=cpid and a.strip().endswith('0xd9')]
spid=collections.Counter(p for _,p in R).most_common(1)[0][0]; R=[t for t,p in R if p==spid]
# server main thread state timeline
state='?'; since=0; spans=[]  # (start,end,state)
sysc=None
for t,c,p,tid,e,a in ev:
    if tid!=spid and ('next_pid='+spid+' ' not in a) and ('prev_pid='+spid+' ' not in a) and not (e=='sched_wakeup' and 'pid='+spid+' ' in a): continue
    new=None
    if e=='sched_switch' and 'prev_pid='+spid+' ' in a: new = 'runnable' if 'prev_state=R' in a else 'asleep'
    elif e=='sched_switch' and 'next_pid='+spid+' ' in a: new = ('sys:'+sysc) if sysc else 'user'
    elif e=='sched_wakeup': new='runnable'
    elif tid==spid and e.startswith('sys_enter_'): sysc=e[10:]; new='sys:'+sysc
    elif tid==spid and e.startswith('sys_exit_'): sysc=None; new='user'
    if new and new!=state:
        spans.append((since,t,state)); state=new; since=t
spans.append((since,1e18,state))
tot=collections.Counter(); n=0; lat=[]
j=0
for w in W:
    while j<len(R) and R[j]<w: j+=1
    if j>=len(R): break
    r=R[j]; lat.append(r-w)
    if r-w<=1: continue
    n+=1
    for s,e,st in spans:
        a=max(s,w); b=min(e,r)
        if b>a: tot[st.replace('sys:epoll_pwait','asleep').replace('sys:epoll_wait','asleep')]+=b-a
lat.sort()
print('actions %d, write→server read p50 %.2f p99 %.2f max %.2f ms; late (>1 ms): %d' % (len(lat), lat[len(lat)//2], lat[int(len(lat)*.99)], lat[-1], n))
T=sum(tot.values())
for k,v in tot.most_common(): print('  %-16s %6.1f ms  %4.0f%%' % (k, v, 100*v/T))
