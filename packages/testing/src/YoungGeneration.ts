// What the young-generation warm-up (`warmYoungGeneration`) is tested with:
// a start-up's burst that grows V8's young generation, and the page faults
// of what a server allocates afterwards. Counts of pages, never times. Each
// test that uses it needs a thread whose young generation nobody warmed: a
// file of its own with one test (vitest's `pool: "forks"` and the default
// `isolate` give each file a process of its own).
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as V8 from "node:v8"
import { Worker } from "node:worker_threads"
import { countsPages, pageBytes, threadFaults } from "./PageFaults.js"

/** Whether the counts these tests read are there (see `PageFaults.countsPages`). */
export const countsFaults = countsPages

const newSpace = () => V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!

/** What loading a program's modules does: objects that live a while, 40 MB of them, grow the young generation. */
export const startUpBurst = (): void => {
  let kept: Array<unknown> | undefined = []
  for (let i = 0; i < 40_000; i++) kept.push(new Array(126))
  kept = undefined
}

/**
 * Allocates half the young generation's size in 1 KiB arrays that die
 * young, as a server's requests do; the page faults that took, of the pages
 * allocated (cold, about half to all of them: 8,000 for 32 MiB).
 */
export const faultsServing = (): { readonly faults: number; readonly pages: number } => {
  const bytes = newSpace().space_size / 2
  const recent: Array<unknown> = new Array(8)
  const before = threadFaults()
  for (let at = 0, i = 0; at < bytes; at += 1024, i++) recent[i & 7] = new Array(126)
  return { faults: threadFaults() - before, pages: bytes / pageBytes }
}

/**
 * After a start-up's burst, `start` (whatever its outcome) must have warmed
 * the young generation: what is allocated next faults in under a tenth of
 * its pages.
 */
export const assertWarmedBy = <A, E, R>(start: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    startUpBurst()
    yield* Effect.exit(start)
    const { faults, pages } = faultsServing()
    assert.isBelow(faults, pages / 10, `${faults} page faults for ${pages} pages of short-lived arrays`)
  })

/**
 * The same burst and allocation on a thread nobody warmed: a worker thread
 * (an isolate, so a young generation, of its own), its page faults and
 * pages. What the warm-up tests compare with: cold, most pages fault in.
 */
export const coldFaults = (): Promise<{ readonly faults: number; readonly pages: number }> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(coldThread, { eval: true })
    worker.once("message", resolve)
    worker.once("error", reject)
  })

// The body of `threadFaults`, `startUpBurst` and `faultsServing`, for an eval'd (CommonJS) worker.
const coldThread = `
const Fs = require("node:fs"), V8 = require("node:v8"), { parentPort } = require("node:worker_threads")
const threadFaults = () => {
  const stat = Fs.readFileSync("/proc/thread-self/stat", "utf8")
  const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ")
  return Number(fields[7]) + Number(fields[9])
}
let kept = []
for (let i = 0; i < 40000; i++) kept.push(new Array(126))
kept = undefined
const bytes = V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size / 2
const recent = new Array(8)
const before = threadFaults()
for (let at = 0, i = 0; at < bytes; at += 1024, i++) recent[i & 7] = new Array(126)
parentPort.postMessage({ faults: threadFaults() - before, pages: bytes / ${pageBytes} })
`
