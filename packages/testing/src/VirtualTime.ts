/**
 * Moving `TestClock` on in steps small enough for dispatch loops, whose ticks
 * each wake several fibers (the tick, the plan's reports, the robot's handler).
 */
import { Effect } from "effect"
import { TestClock } from "effect/testing"

/** Lets every runnable fiber run (16 yields: the longest chain a tick wakes here). */
export const settle: Effect.Effect<void> = Effect.gen(function*() {
  for (let i = 0; i < 16; i++) yield* Effect.yieldNow
})

/** Moves virtual time on by `millis` in 1 ms steps, letting every fiber run in between. */
export const advance = (millis: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (let i = 0; i < millis; i++) {
      yield* TestClock.adjust(1)
      yield* settle
    }
  })
