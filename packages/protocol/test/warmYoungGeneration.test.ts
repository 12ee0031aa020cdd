// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and the warm-up is once per thread.
import { assert, describe, it } from "@effect/vitest"
import { warmYoungGeneration } from "@chiral/protocol"
import * as YoungGeneration from "@chiral/testing/YoungGeneration"

describe("warmYoungGeneration", () => {
  it.skipIf(!YoungGeneration.countsFaults)("after a start-up's burst, what serving allocates next faults in few pages", () => {
    YoungGeneration.startUpBurst()
    warmYoungGeneration()
    const { faults, pages } = YoungGeneration.faultsServing()
    assert.isBelow(faults, pages / 10, `${faults} page faults for ${pages} pages of short-lived arrays`)
  })
})
