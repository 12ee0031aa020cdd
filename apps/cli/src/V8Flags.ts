/**
 * V8 settings for the `chiral` command's processes; imported first by the
 * `chiral` command and the benchmark's server process. Two groups, each set
 * only on the V8s known to have its flags: V8 answers a flag it does not know
 * with "Error: unrecognized flag" on stderr. Policy programs and robots built
 * on @chiral/core can pass the same flags to node where their V8 has them.
 *
 * Large observations (`--external-memory-accounted-in-global-limit`). Every
 * received observation is a fresh ~17 MB ArrayBuffer (its tensors are views
 * into it, so it cannot be reused). By default V8 starts a full mark-compact
 * each time memory outside its heap has grown by 64 MB, which at 30
 * observations a second is several per second: measured here, two thirds of
 * the policy process's CPU went to marking a heap that had not changed, and
 * the helper threads doing it held both cores while the action dispatcher
 * waited. With the flag the buffers count toward V8's ordinary heap limit
 * instead, so collections follow the heap's real growth (one 10 s run: 500 →
 * 120 collections, 13.4 → 5.1 s of CPU; resident memory ~150 MB higher, and
 * flat). V8 13.6 (Node 24) has it; 12.4 (Node 22) and 12.9 (Node 23) do not
 * (`node --v8-options`); V8 14.8 made the behaviour the default and removed
 * the flag (V8 commits 513bb22991/6a5039d9db and cf511a65ad,
 * crbug.com/361124432). Elsewhere the process runs with V8's default
 * collection schedule.
 *
 * Fewer, not cheaper, full collections (`--heap-growing-percent=300`). With
 * external memory counted toward the heap's limit, each collection set the
 * next limit only 1.1–2× above what was live, held observations included, so
 * a policy process receiving 17 MB 30 times a second still ran a full
 * mark-compact every 2–4 observations, 10–30 ms of its main thread each, and
 * its Zenoh session thread as many. The flag fixes the growth factor at 4×,
 * the most V8 grows a heap by itself (`kMaxGrowingFactor`, 4.0, V8's
 * src/heap/heap-controller.h; on a machine with little memory V8's own cap is
 * lower), for the JavaScript heap's limit and the limit that counts external
 * memory alike. Measured (`chiral bench`, 8 cameras 640×480 + depth, fresh
 * receive buffers, 8 s, alternating, `scratchpad/i15gc/ab.sh`): client
 * main-thread GC 600–710 → 27–35 ms (Zenoh, 300%) and 410–470 → 32–77 ms
 * (WebSocket, measured at 200%), longest pause 22–34 → 1–3 ms; the Zenoh
 * stream 29.0–29.6 → 30.0 Hz, its round trip p50 20–23 → 14–17 ms; resident
 * memory level within the runs' spread (Zenoh 617–649 against 632–706 MB).
 * The flag exists in V8 11.3 (Node 20) and 13.6 (Node 24) and V8's current
 * source; where external memory has its own trigger (V8 before 13.6, and
 * 13.x without the flag above) it only spaces out collections of the
 * JavaScript heap itself.
 *
 * What it costs: memory. Between collections a process may grow to 4× what
 * it holds, held observations included: one keeping a 2 s history of
 * 8-camera observations (60 × 17 MB) can reach ~4 GB before V8 collects,
 * where V8's own growth would have let it reach 1.1–2×. And the fixed factor
 * replaces V8's own: it no longer grows the heap more cautiously when memory
 * runs short. Where memory is short (a Jetson), start node with
 * `--heap-growing-percent=0` (V8's own schedule) or a smaller value: a flag
 * given on node's command line is left as the user set it (`notGivenBy`).
 *
 * Tier-up at robot rates (`--invocation-count-for-maglev=50`,
 * `--minimum-invocations-after-ic-update=60`; V8's defaults 400 and 500).
 * V8 compiles a function with Maglev, its fast optimizing tier, once it has
 * run that many times (and that many since its inline caches last changed),
 * so code that runs once per request at 30 Hz (a server's request path, a
 * client's tick) stayed in the interpreter and baseline code for its first
 * ~15 s, longer than most benchmark runs. Measured with the Python
 * reference's client at 30 Hz against `chiral serve` (2 cameras 64×48 +
 * depth, 10 s from start): the server's main thread 710-730 → 560-640 ms of
 * CPU, its compiler threads 200-230 → 240-270 ms; get_obs p50 (median of 5
 * alternating rounds) 1.87 → 1.68 ms, the reference server's 1.49. Also lowering
 * TurboFan's count (3000) to 400 gained nothing more and tripled the
 * compiler threads' CPU (660 ms), which a 2-core machine pays in p90. The
 * two flags exist in V8 11.3 (Node 20) and 13.6 (Node 24) and V8's current
 * source (src/flags/flag-definitions.h); they are set up to V8 15.
 */
import * as V8 from "node:v8"

type Version = readonly [number, number]

/** A group of flags and the V8 versions known to have them: from `since`, up to (not including) `until`. */
interface FlagGroup {
  readonly flags: ReadonlyArray<string>
  readonly since: Version
  readonly until: Version
}

const groups: ReadonlyArray<FlagGroup> = [
  { flags: ["--external-memory-accounted-in-global-limit"], since: [13, 6], until: [14, 8] },
  { flags: ["--heap-growing-percent=300"], since: [11, 3], until: [15, 0] },
  {
    flags: ["--invocation-count-for-maglev=50", "--minimum-invocations-after-ic-update=60"],
    since: [11, 3],
    until: [15, 0]
  }
]

const before = (a: Version, b: Version) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1])

/** The flags to set on V8 `version` (as in `process.versions.v8`, e.g. "13.6.233.17-node.53"). */
export const flagsFor = (version: string): ReadonlyArray<string> => {
  const [major, minor] = version.split(".").map((part) => Number.parseInt(part, 10))
  if (major === undefined || minor === undefined || !Number.isInteger(major) || !Number.isInteger(minor)) return []
  const at = [major, minor] as const
  return groups.flatMap((group) => !before(at, group.since) && before(at, group.until) ? group.flags : [])
}

/** A V8 flag's name as V8's parser matches it: `-` and `_` alike, `no`, `no-` or `no_` negates (`--no_foo_bar=1` → `foo-bar`). */
const flagName = (flag: string): string => flag.replace(/^--?/, "").split("=")[0]!.replaceAll("_", "-").replace(/^no-?/, "")

/**
 * `flags` without those the user gave node (`node --flag chiral.js`; node
 * refuses these in NODE_OPTIONS) in either form: theirs wins, e.g.
 * `--heap-growing-percent=100` on a machine short of memory, or
 * `--no-external-memory-accounted-in-global-limit`.
 */
export const notGivenBy = (flags: ReadonlyArray<string>, given: ReadonlyArray<string>): ReadonlyArray<string> => {
  const names = new Set(given.filter((arg) => arg.startsWith("-")).map(flagName))
  return flags.filter((flag) => !names.has(flagName(flag)))
}

/** What this process set. */
export const flags = notGivenBy(flagsFor(process.versions.v8), process.execArgv)

for (const flag of flags) V8.setFlagsFromString(flag)
