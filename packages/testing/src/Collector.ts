/**
 * A full garbage collection on demand, for tests of what happens once objects
 * are collected (recycled receive buffers, `FrameLease`). V8 reads
 * `--expose-gc` when it creates a context, so setting it at run time and
 * asking a new context for its `gc` gives a working collector without a
 * command-line flag (the test runner's workers have none). It collects this
 * whole isolate (thread).
 */
import * as V8 from "node:v8"
import * as Vm from "node:vm"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

/** One full, synchronous collection; finalization callbacks run later, as tasks. */
export const collect = (): void => gc()

/**
 * Collects and lets finalization callbacks run until `done()` holds, at most
 * `rounds` times; returns whether it held. Waits on the condition, not on
 * time: each round is one collection and one turn of the event loop.
 */
export const collectUntil = async (done: () => boolean, rounds = 50): Promise<boolean> => {
  for (let i = 0; i < rounds; i++) {
    if (done()) return true
    gc()
    await new Promise((resume) => setTimeout(resume, 0))
  }
  return done()
}
