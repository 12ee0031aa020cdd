/**
 * Timers accurate to a fraction of a millisecond, for a thread that has
 * nothing else to do just before them (an action dispatcher's). Node timers
 * are whole milliseconds against a loop clock that may be stale, so the timer
 * wakes `handoverMillis` early, `Atomics.wait` sleeps all but the last
 * `spinMillis`, and the thread spins through those. Neither Effect nor
 * anything else is imported: dispatcher workers start fast.
 */

/** Monotonic milliseconds (`process.hrtime`: the same clock on every thread and process). */
export const monotonicMillis = (): number => Number(process.hrtime.bigint()) / 1e6

/** How long before the due time the timer hands over to `Atomics.wait`. */
const handoverMillis = 2

/**
 * The last stretch before the due time that the thread spins through rather
 * than sleeps: `Atomics.wait` woke the dispatcher ~0.12 ms after the time it
 * was given (p50, 8 cameras streaming, this project's 2-core machine). Spinning
 * the last 0.1 ms took the write of each action from 0.35–0.36 to 0.22–0.28 ms
 * after its tick (p50, 3 alternating rounds of `chiral bench --action-hz 30`
 * on a quiet machine; 0.32–0.34 to 0.15–0.22 with another program's work
 * beside them), for at most about 0.1 ms of CPU per tick.
 */
const spinMillis = 0.1

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Runs `f` at `due` (monotonic ms) or, if that has passed, at once from a timer; returns a cancel. */
export const at = (due: number, f: () => void): (() => void) => {
  const timer = setTimeout(() => {
    const rest = due - monotonicMillis()
    if (rest > spinMillis + 0.02) Atomics.wait(sleeper, 0, 0, rest - spinMillis)
    while (monotonicMillis() < due) {
      // the last stretch: see spinMillis
    }
    f()
  }, Math.max(0, Math.floor(due - monotonicMillis() - handoverMillis)))
  return () => clearTimeout(timer)
}
