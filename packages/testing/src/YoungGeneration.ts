// What the young-generation warm-up (`warmYoungGeneration`) is tested with:
// a start-up's burst that grows V8's young generation, and the page faults
// of what a server allocates afterwards. Counts of pages, never times.
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as V8 from "node:v8"

/** Minor and major page faults of this thread so far (/proc/thread-self/stat, fields 10 and 12). */
export const threadFaults = (): number => {
  const fields = Fs.readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1]!.split(" ")
  return Number(fields[7]) + Number(fields[9])
}

/** Whether this platform has the page-fault counts the tests read. */
export const countsFaults = process.platform === "linux"

/** V8's young generation's capacity, bytes. */
export const capacity = (): number => V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_size

/** What loading a program's modules does: objects that live a while, 40 MB of them, grow the young generation. */
export const startUpBurst = (): void => {
  let kept: Array<unknown> | undefined = []
  for (let i = 0; i < 40_000; i++) kept.push(new Array(126))
  kept = undefined
}

/**
 * Allocates half the young generation's capacity in 1 KiB arrays that die
 * young, as a server's requests do; the page faults that took, of the pages
 * allocated (cold, about one fault per page: 8,000 for 32 MiB).
 */
export const faultsServing = (): { readonly faults: number; readonly pages: number } => {
  const bytes = capacity() / 2
  const recent: Array<unknown> = new Array(8)
  const before = threadFaults()
  for (let at = 0, i = 0; at < bytes; at += 1024, i++) recent[i & 7] = new Array(126)
  return { faults: threadFaults() - before, pages: bytes / 4096 }
}

/**
 * After a start-up's burst, `start` (whatever its outcome) must have warmed
 * the young generation: what is allocated next faults in under a tenth of
 * its pages (cold: about half to all of them).
 */
export const assertWarmedBy = <A, E, R>(start: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    startUpBurst()
    yield* Effect.exit(start)
    const { faults, pages } = faultsServing()
    assert.isBelow(faults, pages / 10, `${faults} page faults for ${pages} pages of short-lived arrays`)
  })
