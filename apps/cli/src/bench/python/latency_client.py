"""The Python reference's PolicyClient as a policy at --hz: get_obs, then one
put_action (dispatched by the reference's own dispatcher at the same rate),
for --seconds. Prints one JSON line: get_obs latency in ms (n, p50, p90, p99)."""
import argparse, json, time
import numpy as np
import chiral

args = argparse.ArgumentParser()
args.add_argument("uri")
args.add_argument("--hz", type=float, default=30)
args.add_argument("--seconds", type=float, default=10)
o = args.parse_args()
waits = []
with chiral.PolicyClient(o.uri) as env:
    env.get_metadata()
    env.start_action_dispatch(o.hz)
    due = time.perf_counter()
    end = due + o.seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        env.get_obs()
        waits.append((time.perf_counter() - start) * 1000)
        env.put_action(np.zeros(7, dtype=np.float32))
        due += 1 / o.hz
        time.sleep(max(0.0, due - time.perf_counter()))
waits.sort()
at = lambda q: round(waits[min(len(waits) - 1, int(q * len(waits)))], 3)
print(json.dumps({"n": len(waits), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99)}))
