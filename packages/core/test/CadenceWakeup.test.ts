// Cadence.fixed's step on virtual time, driven by hand: what happens when a
// run starts early (Node timers can fire up to a millisecond before their
// time) or ends late.
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schedule } from "effect"
import { TestClock } from "effect/testing"
import { Cadence } from "../src/index.js"

/** The delays the schedule asks for after runs ending at the given virtual times (ms). */
const delaysAfterRunsEndingAt = (period: number, ends: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const step = yield* Schedule.toStep(Cadence.fixed(Duration.millis(period)))
    const delays: Array<number> = []
    let now = 0
    for (const end of ends) {
      yield* TestClock.adjust(Duration.millis(end - now))
      now = end
      const [, delay] = yield* step(now, undefined)
      delays.push(Duration.toMillis(delay))
    }
    return delays
  })

describe("Cadence.fixed wake-ups", () => {
  it.effect("a run that starts just before its slot is that slot's run: the next one waits a whole slot", () =>
    Effect.gen(function*() {
      // slot 0 ends at 1; slot 1 is woken early and ends at 99.5; slot 2 at 200.
      const delays = yield* delaysAfterRunsEndingAt(100, [1, 99.5, 200.2])
      assert.deepStrictEqual(delays.map((d) => Number(d.toFixed(6))), [99, 100.5, 99.8])
    }))

  it.effect("a run that overruns a whole period goes again at once, then rejoins the grid", () =>
    Effect.gen(function*() {
      // slot 0 runs until 250: run now (it is slot 2's time), then slot 3 at 300.
      const delays = yield* delaysAfterRunsEndingAt(100, [250, 251])
      assert.deepStrictEqual(delays, [0, 49])
    }))
})
