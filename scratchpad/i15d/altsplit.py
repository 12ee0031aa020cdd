# altsplit.py STAMPS PCAP_TEXT PORT: for a server that switches a change on and off every 0.5 s of wall clock
# (on while floor(t*2) is even), the get_obs latencies of stamped_client.sh and the request-to-reply times of
# a loopback capture (tcpdump -tt -r …), split by which half-second each request fell in.
import sys, re, statistics
stamps, pcap, port = sys.argv[1], sys.argv[2], sys.argv[3]
def q(a, f): a = sorted(a); return round(a[min(len(a)-1, int(f*len(a)))], 3) if a else None
cl = {0: [], 1: []}
for line in open(stamps):
    t, w = map(float, line.split()); cl[int(t * 2) % 2].append(w)
sv = {0: [], 1: []}; req = None
for line in open(pcap):
    m = re.match(r"([\d.]+) IP [\d.]+\.(\d+) > [\d.]+\.(\d+): .* length (\d+)", line)
    if not m: continue
    t, sp, dp, n = float(m[1]), m[2], m[3], int(m[4])
    if dp == port and 0 < n < 60: req = t
    elif sp == port and n > 10000 and req is not None: sv[int(req * 2) % 2].append((t - req) * 1000); req = None
for mode, name in ((0, "on"), (1, "off")):
    print(f"{name}: client p50 {q(cl[mode], .5)} p90 {q(cl[mode], .9)} (n {len(cl[mode])})  server p50 {q(sv[mode], .5)} p90 {q(sv[mode], .9)} (n {len(sv[mode])})")
