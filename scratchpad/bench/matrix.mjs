// Runs `chiral bench --json` for several configurations, alternating, REPS times each,
// and prints the median of every metric per configuration (the machine is shared and noisy).
//   node scratchpad/bench/matrix.mjs REPS 'label|node flags|bench args|cwd' ...
import { execFileSync } from "node:child_process"
const [reps, ...specs] = process.argv.slice(2)
const configs = specs.map((s) => { const [label, flags, args, cwd] = s.split("|"); return { label, flags: flags.split(" ").filter(Boolean), args: args.split(" ").filter(Boolean), cwd: cwd || process.cwd(), runs: [] } })
const med = (xs) => { const s = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN }
for (let r = 0; r < Number(reps); r++) for (const c of configs) {
  const load = (await import("node:fs")).readFileSync("/proc/loadavg", "utf8").split(" ")[0]
  const out = execFileSync(process.execPath, [...c.flags, "apps/cli/bin/chiral.js", "bench", ...c.args, "--json"], { cwd: c.cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 600_000 })
  const j = JSON.parse(out.trim().split("\n").pop()); j.load = Number(load); c.runs.push(j)
  const a = j.action_cadence
  console.error(`${c.label} #${r + 1}: rt ${j.obs_round_trip_ms.p50} raw ${j.raw_tcp_round_trip_ms.p50} ratio ${j.ratio_to_raw_tcp} hz ${j.obs_hz} jit p99 ${a.jitter_ms_p99} drift ${a.drift_ms} n ${a.count} load ${load}`)
}
const row = (c) => {
  const g = (f) => med(c.runs.map(f))
  return [c.label, g((j) => j.obs_round_trip_ms.p50), g((j) => j.obs_round_trip_ms.p90), g((j) => j.obs_round_trip_ms.p99), g((j) => j.raw_tcp_round_trip_ms.p50), g((j) => j.ratio_to_raw_tcp), g((j) => j.throughput_mb_s), g((j) => j.obs_hz), g((j) => j.action_cadence.count), g((j) => j.action_cadence.interval_ms_p50), g((j) => j.action_cadence.jitter_ms_p50), g((j) => j.action_cadence.jitter_ms_p99), g((j) => j.action_cadence.jitter_ms_max), g((j) => j.action_cadence.drift_ms), g((j) => j.rss_mb.start), g((j) => j.rss_mb.end), g((j) => j.load)]
}
const head = ["config", "rt p50", "rt p90", "rt p99", "raw p50", "ratio", "MB/s", "obs Hz", "acts", "intv p50", "jit p50", "jit p99", "jit max", "drift", "rss0", "rss1", "load"]
const fmt = (v) => typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3)) : v
console.log(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`)
for (const c of configs) console.log(`| ${row(c).map(fmt).join(" | ")} |`)
