// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and the warm-up is once per thread.
import { describe, it } from "@effect/vitest"
import { warmYoungGeneration } from "@chiral/protocol"
import { Effect } from "effect"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("warmYoungGeneration", () => {
  it.effect.skipIf(!YoungGeneration.countsFaults)("after a start-up's burst, what serving allocates next faults in few pages", () =>
    YoungGeneration.assertWarmedBy(Effect.sync(warmYoungGeneration)))
})
