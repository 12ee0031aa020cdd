// The Zenoh dispatcher worker's clock (TickClock): it tells a tick when it
// was due, never wakes before that, and on an overrun still waits for a
// timer: the worker may run real-time (ThreadPriority), and a thread whose
// ticks all overran must still block rather than hold a core. Only lower
// bounds and order are asserted, never how long a wait took.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect } from "effect"
import { monotonicMillis } from "@chiral/core/PreciseTimer"
import { TickClock } from "../src/ZenohDispatchWorker.js"

const tickClock = Effect.map(Effect.clockWith(Effect.succeed), (base: Clock.Clock) => new TickClock(base))

describe("TickClock", () => {
  it.live("wakes no earlier than the tick is due, and records when that was", () =>
    Effect.gen(function*() {
      const clock = yield* tickClock
      const before = monotonicMillis()
      yield* clock.sleep(Duration.millis(15))
      const woke = monotonicMillis()
      assert.isDefined(clock.due)
      assert.isAtLeast(clock.due!, before + 15)
      assert.isAtLeast(woke, clock.due!)
    }))

  it.live("an overrun (no time left) waits for a timer, not just a turn of the scheduler", () =>
    Effect.gen(function*() {
      const clock = yield* tickClock
      let timerRan = false
      // Node runs timers due at the same time in the order they were set: this one first.
      setTimeout(() => {
        timerRan = true
      }, 0)
      const before = monotonicMillis()
      yield* clock.sleep(Duration.zero)
      assert.isTrue(timerRan, "the sleep ended before a timer set ahead of it had run")
      assert.isAtLeast(clock.due!, before)
    }))
})
