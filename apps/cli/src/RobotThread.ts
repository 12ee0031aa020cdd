/**
 * The robot's main thread, raised as `chiral serve --priority` (or `chiral
 * bench --robot-priority`) asks: where every action reaches the robot's
 * handler, and where all of its other work runs too (its sensors, the 17 MB
 * replies, whatever its handlers compute).
 *
 * Real-time (`SCHED_FIFO` 1, through `ThreadPriority`) only for this thread
 * (reset-on-fork: threads and processes it starts later are ordinary). A
 * lower nice value, asked for or taken when real-time is not allowed, is
 * inherited by the threads and processes it starts later, as nice values are.
 * Where Linux lets real-time threads take a whole core
 * (`sched_rt_runtime_us` −1) real-time is not taken: a robot thread that
 * stopped blocking (an overloaded loop, a handler stuck in a loop) would then
 * hold its core for good, ahead of the policy and of the kernel threads that
 * carry the robot's own traffic; nice is asked for instead, and said why.
 */
import { ThreadPriority } from "@chiral/core"

/** What a robot process may ask for its main thread, least first. */
export const priorities = ["normal", "nice", "realtime"] as const satisfies ReadonlyArray<ThreadPriority.Preference>

export type Priority = typeof priorities[number]

/**
 * Raises the calling thread (call it on the main thread, before allocating
 * the robot's buffers: `chrt` forks the process, and a fork copies its page
 * tables). Returns how it runs, for a log line: "normal" when not asked,
 * else `ThreadPriority.describe` of what it got, and why not real-time when
 * that was asked and refused here. `unthrottled`: whether Linux lets
 * real-time threads take a whole core (`ThreadPriority.realtimeUnthrottled`).
 */
export const raise = (priority: Priority, unthrottled: () => boolean = ThreadPriority.realtimeUnthrottled): string => {
  if (priority === "normal") return "normal"
  if (priority === "realtime" && unthrottled()) {
    return `${
      ThreadPriority.describe(ThreadPriority.prioritizeCurrentThread("nice"))
    }; not real-time: sched_rt_runtime_us is -1, and nothing would stop this thread if it stopped blocking`
  }
  return ThreadPriority.describe(ThreadPriority.prioritizeCurrentThread(priority))
}
