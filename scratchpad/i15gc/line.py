import re, sys
# One line from `chiral bench`'s text output (stdin), labelled argv[1].
t = sys.stdin.read()
def g(p):
    m = re.search(p, t)
    return m.group(1) if m else "?"
fields = [
    ("rt p50", r"obs round trip\s+p50 ([\d.]+)"), ("p99", r"obs round trip.*?p99 ([\d.]+)"),
    ("obs Hz", r"obs stream\s+([\d.]+) Hz"), ("jit p50", r"arrived;.*?\|jitter\| p50 ([\d.]+) ms"), ("jit p99", r"arrived;.*?p99 ([\d.]+) ms"),
    ("sent p99", r"as sent.*?p99 ([\d.]+) ms"), ("gc n", r"gc \(stream\)\s+(\d+) pauses"),
    ("gc ms", r"pauses, ([\d.]+) ms"), ("gc max", r"longest ([\d.]+)"),
    ("rss", r"rss\s+client ([\d.]+ → [\d.]+)"), ("flt/obs", r"client ([\d.]+); server"),
]
print(f"{sys.argv[1]:12s} " + "  ".join(f"{k} {g(p)}" for k, p in fields))
