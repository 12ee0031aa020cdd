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
 * Policy programs built on @chiral/core can pass the same flag to node.
 */
import * as V8 from "node:v8"

export const flags = ["--external-memory-accounted-in-global-limit"] as const

for (const flag of flags) V8.setFlagsFromString(flag)
