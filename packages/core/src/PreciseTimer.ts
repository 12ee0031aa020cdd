/**
 * Timers accurate to a fraction of a millisecond, for a thread that has
 * nothing else to do just before them (an action dispatcher's). Node timers
 * are whole milliseconds against a loop clock that may be stale, so the timer
 * wakes `handoverMillis` early and `Atomics.wait` sleeps the rest. Neither
 * Effect nor anything else is imported: dispatcher workers start fast.
 */

/** Monotonic milliseconds (`process.hrtime`: the same clock on every thread and process). */
export const monotonicMillis = (): number => Number(process.hrtime.bigint()) / 1e6

/** How long before the due time the timer hands over to `Atomics.wait`. */
const handoverMillis = 2

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Runs `f` at `due` (monotonic ms) or, if that has passed, at once from a timer; returns a cancel. */
export const at = (due: number, f: () => void): (() => void) => {
  const timer = setTimeout(() => {
    const rest = due - monotonicMillis()
    if (rest > 0.02) Atomics.wait(sleeper, 0, 0, rest)
    f()
  }, Math.max(0, Math.floor(due - monotonicMillis() - handoverMillis)))
  return () => clearTimeout(timer)
}
