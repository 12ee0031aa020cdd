# tcpdump -tt lines on stdin: each client packet of under 60 bytes to PORT (an obs_request: 28 bytes
# of WebSocket frame; an apply_action is 125) to the server's next packet of over 10 kB (its reply).
import sys, re
port = sys.argv[1]; req = None; lat = []
for line in sys.stdin:
    m = re.match(r"([\d.]+) IP [\d.]+\.(\d+) > [\d.]+\.(\d+): .* length (\d+)", line)
    if not m: continue
    t, sp, dp, n = float(m[1]), m[2], m[3], int(m[4])
    if dp == port and 0 < n < 60: req = t
    elif sp == port and n > 10000 and req is not None: lat.append((t - req) * 1000); req = None
lat.sort(); q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))], 3) if lat else None
print({"n": len(lat), "p50": q(.5), "p90": q(.9), "p99": q(.99)})
