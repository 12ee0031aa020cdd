import fs from "node:fs"
const d = JSON.parse(fs.readFileSync(process.argv[2])); const keys = ["msg", "offer", "slotApply", "record", "applied"]
const med = (a) => { a = [...a].sort((x, y) => x - y); return `p50 ${a[a.length >> 1].toFixed(3)} p90 ${a[Math.floor(a.length * .9)].toFixed(3)} max ${a[a.length - 1].toFixed(3)}` }
for (let i = 1; i < keys.length; i++) { const a = d[keys[i - 1]], b = d[keys[i]]; if (!a || !b) continue; const n = Math.min(a.length, b.length); console.log(`${keys[i - 1]}→${keys[i]} (n ${a.length}/${b.length})`, med(Array.from({ length: n }, (_, k) => b[k] - a[k]))) }
const g = d.gcs ?? []; console.log("gcs", g.length, "total ms", g.reduce((a, x) => a + x[1], 0).toFixed(1), "max", Math.max(...g.map((x) => x[1])).toFixed(2))
// slow actions: msg→applied > 1 ms, and whether a gc overlapped
d.msg.forEach((m, k) => { const a = d.applied[k]; if (a - m > 1) console.log("slow", (a - m).toFixed(2), "gc overlap:", g.filter(([s, du]) => s < a && s + du > m).map((x) => x[1].toFixed(2) + "/" + x[2]).join(",") || "none", "stages", ["offer","slotApply","record"].map((s) => (d[s][k] - m).toFixed(2)).join(" ")) })
