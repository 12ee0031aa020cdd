// Summarizes a .cpuprofile: self time by function (top N), and by file.
import fs from "node:fs"
const p = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const total = p.endTime - p.startTime
const dt = new Map(); const counts = new Map()
for (let i = 0; i < p.samples.length; i++) { const id = p.samples[i]; counts.set(id, (counts.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)) }
const byFn = new Map(), byFile = new Map()
for (const n of p.nodes) {
  const t = (counts.get(n.id) ?? 0) / 1000
  const cf = n.callFrame; const file = (cf.url || "(native)").replace(/.*node_modules\//, "").replace(/.*\/work\/main\//, "")
  const key = `${cf.functionName || "(anon)"} ${file}:${cf.lineNumber + 1}`
  byFn.set(key, (byFn.get(key) ?? 0) + t); byFile.set(file.replace(/\/[^/]*$/, ""), (byFile.get(file.replace(/\/[^/]*$/, "")) ?? 0) + t)
}
const top = (m, k) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
console.log(`total ${(total / 1000).toFixed(0)} ms`)
for (const [k, v] of top(byFn, Number(process.argv[3] ?? 30))) console.log(`${v.toFixed(1).padStart(8)} ms  ${k}`)
console.log("--- by dir")
for (const [k, v] of top(byFile, 15)) console.log(`${v.toFixed(1).padStart(8)} ms  ${k}`)
