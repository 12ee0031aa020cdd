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

export const fixed = (period: Duration.Input): Schedule.Schedule<number> => {
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
            return [attempt, Duration.zero]
          }
          // Always the slot after the last one, never "the next grid point after
          // now": Node's timers can fire up to a millisecond early (libuv's cached
          // loop time), and a run that starts just before its slot's time must
          // not be followed by a second run for the same slot.
          slot = due
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
 */
export const untilDisconnected = (
  name: string,
  tick: Effect.Effect<unknown, RequestError>,
  period: Duration.Duration
): Effect.Effect<RequestError> =>
  tick.pipe(
    Effect.catch((error) =>
      error.reason === "Disconnected" ? Effect.fail(error) : Effect.logWarning(`chiral: ${name}: ${error.message}`)
    ),
    Effect.repeat(fixed(period)),
    Effect.matchEffect({ onFailure: Effect.succeed, onSuccess: () => Effect.never })
  )
