/**
 * V8 settings for processes that move large observations; imported first by
 * the `chiral` command and the benchmark's server process.
 *
 * Every received observation is a fresh ~17 MB ArrayBuffer (its tensors are
 * views into it, so it cannot be reused). By default V8 starts a full
 * mark-compact each time memory outside its heap has grown by 64 MB, which at
 * 30 observations a second is several per second: measured here, two thirds
 * of the policy process's CPU went to marking a heap that had not changed,
 * and the helper threads doing it held both cores while the action
 * dispatcher waited. With `--external-memory-accounted-in-global-limit` the
 * buffers count toward V8's ordinary heap limit instead, so collections follow
 * the heap's real growth (one 10 s run: 500 → 120 collections, 13.4 → 5.1 s
 * of CPU; resident memory ~150 MB higher, and flat).
 *
 * Policy programs built on @chiral/core can pass the same flag to node
 * where their V8 has it (below).
 *
 * Not every supported Node has the flag, and V8 answers a flag it does not
 * know with "Error: unrecognized flag" on stderr, so it is set only where it
 * exists: V8 13.6 (Node 24) has it; 12.4 (Node 22) and 12.9 (Node 23) do not
 * (`node --v8-options`); V8 14.8 made the behaviour the default and removed the
 * flag (V8 commits 513bb22991/6a5039d9db and cf511a65ad, crbug.com/361124432).
 * Elsewhere the process runs with V8's default collection schedule.
 */
import * as V8 from "node:v8"

/** The first V8 with the flag that we know of, and the first without it again. */
const since = [13, 6] as const
const until = [14, 8] as const

const before = (a: readonly [number, number], b: readonly [number, number]) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1])

/** The flags to set on V8 `version` (as in `process.versions.v8`, e.g. "13.6.233.17-node.53"). */
export const flagsFor = (version: string): ReadonlyArray<string> => {
  const [major, minor] = version.split(".").map((part) => Number.parseInt(part, 10))
  if (major === undefined || minor === undefined || !Number.isInteger(major) || !Number.isInteger(minor)) return []
  const at = [major, minor] as const
  return !before(at, since) && before(at, until) ? ["--external-memory-accounted-in-global-limit"] : []
}

/** What this process set. */
export const flags = flagsFor(process.versions.v8)

for (const flag of flags) V8.setFlagsFromString(flag)
