# Per-stage lateness of actions from the dumps of stamp-actions.py (see there).
import json,sys
d=json.load(open(sys.argv[1])); st=json.load(open(sys.argv[2]))
du,se,ar=d['dues'],d['sends'],[t for _,t in d['arrivals']]
n=min(len(du),len(se),len(ar),len(st))
def q(x,p): x=sorted(x); return x[min(len(x)-1,int(p*len(x)))]
def show(name,x): print('%-18s p50 %.3f p90 %.3f p99 %.3f max %.3f'%(name,q(x,.5),q(x,.9),q(x,.99),max(x)))
show('due->send',[se[i]-du[i] for i in range(n)])
show('send->message',[st[i][1]-se[i] for i in range(n)])
show('message->handle',[st[i][6]-st[i][1] for i in range(n)])
show('decode',[st[i][7]-st[i][6] for i in range(n)])
show('decoded->offer',[st[i][3]-st[i][7] for i in range(n)])
show('offer->apply',[st[i][4]-st[i][3] for i in range(n)])
show('apply->admitted',[st[i][5]-st[i][4] for i in range(n)])
show('admitted->handler',[st[i][2]-st[i][5] for i in range(n)])
show('message->handler',[st[i][2]-st[i][1] for i in range(n)])
show('due->handler',[st[i][2]-du[i] for i in range(n)])
w=sorted(range(n), key=lambda i:-(st[i][2]-du[i]))[:6]
for i in w: print(' worst #%d: due->send %.2f send->msg %.2f msg->handler %.2f'%(i, se[i]-du[i], st[i][1]-se[i], st[i][2]-st[i][1]))
import bisect
A,G=d.get('asked',[]),d.get('got',[])
def phase(t):
    # in a transfer if some request asked before t has its frame received after t
    i=bisect.bisect_right(A,t)-1
    if i<0 or i>=len(G): return 'between'
    return 'transfer' if G[i]>t else 'between'
if A:
  for i in w: print(' #%d due %s, send %s; msg %s'%(i, phase(du[i]), phase(se[i]), phase(st[i][1])))
  tr=[i for i in range(n) if phase(du[i])=='transfer']; bt=[i for i in range(n) if phase(du[i])!='transfer']
  for name,ix in (('transfer',tr),('between',bt)):
    if ix:
      show('due->send '+name[:4],[se[i]-du[i] for i in ix]); show('send->msg '+name[:4],[st[i][1]-se[i] for i in ix]); show('msg->hdl '+name[:4],[st[i][2]-st[i][1] for i in ix])
import os
if os.environ.get('WDUMP') and os.path.exists(os.environ['WDUMP']):
  W=[json.loads(l) for l in open(os.environ['WDUMP'])]
  # match each due to the write that started after it
  starts=[x[0] for x in W]
  lk=[];sy=[];pre=[]
  for i in w:
    j=bisect.bisect_left(starts, du[i]-0.5)
    if j<len(W): x=W[j]; print('   #%d: due->write start %.2f lock wait %.2f (%d) write %.2f'%(i, x[0]-du[i], x[1]-x[0], x[3], x[2]-x[1]))
  show('lock wait',[x[1]-x[0] for x in W]); show('write syscall',[x[2]-x[1] for x in W])
