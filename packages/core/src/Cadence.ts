/**
 * The schedule behind the client's loops: `Schedule.fixed`'s behaviour (recur
 * on a fixed grid; when a run overran a whole period, go again at once and
 * rejoin the grid, missed ticks are not replayed), with two differences that
 * matter for robot timing:
 *  - the grid is anchored when the repeat starts, so the first run is tick 0
 *    and its duration does not shift every later tick (`Schedule.fixed` anchors
 *    at the end of the first run);
 *  - time is read from the monotonic clock with sub-millisecond precision
 *    (`Schedule.fixed` uses whole wall-clock milliseconds), so a wall clock
 *    step cannot move the grid and rounding adds no jitter.
 * Under `TestClock` both clocks are virtual, so cadences test exactly.
 */
import { Duration, Effect, Schedule } from "effect"
import type { RequestError } from "./RequestError.js"

/** Tolerance for float rounding when deciding which grid slot "now" is in. */
const epsilon = 1e-6

/**
 * `onSlot`: told, before each wait, the grid slot of the run that follows it
 * (the first run is slot 0), so that a run can tell its grid time, k periods
 * after the start, from when it actually runs: a run whose wait ended long
 * after its time (the process was stopped, the thread blocked) is that late.
 */
export const fixed = (period: Duration.Input, onSlot?: (slot: number) => void): Schedule.Schedule<number> => {
  const window = Duration.toMillis(Duration.fromInputUnsafe(period))
  return Schedule.fromStep(Effect.clockWith((clock) =>
    Effect.sync(() => {
      const start = clock.monotonicTimeNanosUnsafe()
      let attempt = 0
      // grid slot of the run that just ended (the first run is slot 0)
      let slot = 0
      return (_now: number, _input: unknown) =>
        Effect.sync((): [number, Duration.Duration] => {
          attempt++
          if (window <= 0) return [attempt, Duration.zero]
          const elapsed = Number(clock.monotonicTimeNanosUnsafe() - start) / 1e6
          const due = slot + 1
          if (elapsed + epsilon >= due * window) {
            // overran a whole period: run now (as the latest slot that has begun),
            // rejoin the grid afterwards
            slot = Math.max(due, Math.floor(elapsed / window + epsilon))
            onSlot?.(slot)
            return [attempt, Duration.zero]
          }
          // Always the slot after the last one, never "the next grid point after
          // now": Node's timers can fire up to a millisecond early (libuv's cached
          // loop time), and a run that starts just before its slot's time must
          // not be followed by a second run for the same slot.
          slot = due
          onSlot?.(slot)
          return [attempt, Duration.millis(due * window - elapsed)]
        })
    })
  ))
}

/** The period of a rate in Hz; a defect for anything but a positive finite rate. */
export const periodOf = (hz: number): Effect.Effect<Duration.Duration> =>
  Number.isFinite(hz) && hz > 0
    ? Effect.succeed(Duration.millis(1000 / hz))
    : Effect.die(new RangeError(`rate must be a positive number of Hz, got ${hz}`))

/**
 * Runs `tick` every `period` on the `fixed` grid until it fails with a
 * `Disconnected` `RequestError` (the connection is gone), and returns that
 * error; any other failure of `name`'s tick is logged and the loop carries on.
 * A `tick` that is a function is given the grid slot of each run (0, 1, …:
 * its grid time is that many periods after the first run's; see `fixed`).
 */
export const untilDisconnected = (
  name: string,
  tick: Effect.Effect<unknown, RequestError> | ((slot: number) => Effect.Effect<unknown, RequestError>),
  period: Duration.Duration
): Effect.Effect<RequestError> =>
  Effect.suspend(() => {
    let slot = 0
    const run = typeof tick === "function" ? Effect.suspend(() => tick(slot)) : tick
    return run.pipe(
      Effect.catch((error) =>
        error.reason === "Disconnected" ? Effect.fail(error) : Effect.logWarning(`chiral: ${name}: ${error.message}`)
      ),
      Effect.repeat(fixed(period, (next) => {
        slot = next
      })),
      Effect.matchEffect({ onFailure: Effect.succeed, onSuccess: () => Effect.never })
    )
  })
