/**
 * How a process's main thread ran: the intervals of a 1 ms timer on its event
 * loop (`perf_hooks.monitorEventLoopDelay`), and how long the thread was
 * ready to run but waited for a core (Linux `/proc/thread-self/schedstat`,
 * its second field: time on a run queue, ns). `chiral bench` reads them in the
 * robot's process over the stream phase: an action reaches the robot's
 * handler only when that loop turns, so a missed jitter target can say whether
 * the robot's thread was blocked (long intervals) or not given a core (the
 * wait) while the machine moved 17 MB observations.
 */
import { readFileSync } from "node:fs"
import { monitorEventLoopDelay } from "node:perf_hooks"

export interface EventLoopFigures {
  /** Intervals of a 1 ms timer on the event loop: p99 and the longest, ms (1 ms when the loop is idle). */
  readonly timer_ms_p99: number
  readonly timer_ms_max: number
  /** Time the main thread was runnable but not running, ms per second; null without Linux schedstat. */
  readonly runqueue_ms_per_s: number | null
}

/** The main thread's time on a run queue so far, ms; NaN where the system does not say. */
const runqueueMillis = (): number => {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").trim().split(/\s+/)[1]) / 1e6
  } catch {
    return Number.NaN
  }
}

/** Starts watching this thread's event loop; `take` gives the figures since the last take (or the start) and starts afresh. */
export const watch = (): { readonly take: () => EventLoopFigures } => {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  let since = performance.now()
  let waitedBefore = runqueueMillis()
  return {
    take: () => {
      const now = performance.now()
      const waited = runqueueMillis()
      const figures: EventLoopFigures = {
        timer_ms_p99: histogram.percentile(99) / 1e6,
        timer_ms_max: histogram.max / 1e6,
        runqueue_ms_per_s: Number.isFinite(waited - waitedBefore) ? (waited - waitedBefore) / ((now - since) / 1000) : null
      }
      histogram.reset()
      since = now
      waitedBefore = waited
      return figures
    }
  }
}
