// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and the warm-up is once per thread.
import { assert, describe, it } from "@effect/vitest"
import { warmYoungGeneration } from "@chiral/protocol"
import { Effect } from "effect"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("warmYoungGeneration", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("after a start-up's burst, what serving allocates next faults in few pages", () =>
    YoungGeneration.assertWarmedBy(Effect.sync(warmYoungGeneration)))

  // What makes the tests of the warm-up and of its callers mean something here.
  it.effect.skipIf(!YoungGeneration.countsFaults)("without it, the same burst and allocation fault in most of those pages", () =>
    Effect.gen(function*() {
      const { faults, pages } = yield* Effect.promise(YoungGeneration.coldFaults)
      assert.isAbove(faults, pages / 3, `${faults} page faults for ${pages} pages of short-lived arrays`)
    }))
})
