"""latency_client.py with, per get_obs, the server process's minor page faults
and CPU ticks so far (/proc/PID/stat fields 10, 14, 15): is a fresh server's
slower first third its page faults? Prints per-third p50 and faults/request.
usage: faults-trace.py URI PID [--seconds 10]"""
import argparse, json, time
import numpy as np
import chiral

args = argparse.ArgumentParser()
args.add_argument("uri")
args.add_argument("pid")
args.add_argument("--hz", type=float, default=30)
args.add_argument("--seconds", type=float, default=10)
o = args.parse_args()

def stat():
    with open(f"/proc/{o.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]) + int(fields[12])

rows = []
with chiral.PolicyClient(o.uri) as env:
    env.get_metadata()
    env.start_action_dispatch(o.hz)
    due = time.perf_counter()
    end = due + o.seconds
    while time.perf_counter() < end:
        f0, c0 = stat()
        start = time.perf_counter()
        env.get_obs()
        wait = (time.perf_counter() - start) * 1000
        f1, c1 = stat()
        rows.append((wait, f1 - f0, c1 - c0))
        env.put_action(np.zeros(7, dtype=np.float32))
        due += 1 / o.hz
        time.sleep(max(0.0, due - time.perf_counter()))
n = len(rows)
out = []
for k in range(3):
    part = rows[k * n // 3:(k + 1) * n // 3]
    waits = sorted(r[0] for r in part)
    out.append({"third": k + 1, "p50_ms": round(waits[len(waits) // 2], 3),
                "faults_per_req_during": round(sum(r[1] for r in part) / len(part), 2)})
print(json.dumps({"n": n, "thirds": out}))
