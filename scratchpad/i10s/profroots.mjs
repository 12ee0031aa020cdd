// Inclusive time of each function directly under the root of a .cpuprofile, and
// the total time spent inside a named function (e.g. applyAction), by the
// stack's entry point: which event-loop callback the work ran in.
import fs from "node:fs"
const p = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const self = new Map()
for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0))
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const incl = (n) => (self.get(n.id) ?? 0) + (n.children ?? []).reduce((s, c) => s + incl(byId.get(c)), 0)
const name = (n) => `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.replace(/.*\//, "")}:${n.callFrame.lineNumber + 1}`
const root = p.nodes[0]
const rows = (root.children ?? []).map((c) => byId.get(c)).map((n) => [incl(n) / 1000, n])
rows.sort((a, b) => b[0] - a[0])
for (const [t, n] of rows.slice(0, 8)) {
  console.log(`${t.toFixed(0).padStart(7)} ms  ${name(n)}`)
  const kids = (n.children ?? []).map((c) => byId.get(c)).map((k) => [incl(k) / 1000, k]).sort((a, b) => b[0] - a[0])
  for (const [tk, k] of kids.slice(0, 4)) {
    console.log(`${tk.toFixed(0).padStart(15)} ms  ${name(k)}`)
    const g = (k.children ?? []).map((c) => byId.get(c)).map((x) => [incl(x) / 1000, x]).sort((a, b) => b[0] - a[0])
    for (const [tg, x] of g.slice(0, 3)) console.log(`${tg.toFixed(0).padStart(23)} ms  ${name(x)}`)
  }
}
