/**
 * Best-effort scheduling priority for the calling thread (Linux).
 *
 * Why: on a machine as small as two cores, a thread that must act at a given
 * millisecond (the action dispatcher) waits whenever other threads hold both
 * cores: V8's garbage-collection helpers, the policy's own work, the kernel
 * copying 17 MB observations. A lower nice value puts it ahead of them.
 *
 * Linux applies `setpriority(PRIO_PROCESS, tid)` to one thread, and
 * `/proc/thread-self` names the calling thread, so Node's `os.setPriority`
 * can address a worker thread. Raising priority needs CAP_SYS_NICE or a
 * `RLIMIT_NICE` allowance (`ulimit -e`, limits.conf); without either this
 * changes nothing and says so. Elsewhere than Linux it does nothing.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"

/** The calling thread's kernel id, or undefined where `/proc/thread-self` does not exist. */
export const currentThreadId = (): number | undefined => {
  try {
    const tid = Number(Fs.readlinkSync("/proc/thread-self").split("/").pop())
    return Number.isInteger(tid) && tid > 0 ? tid : undefined
  } catch {
    return undefined
  }
}

/**
 * Lowers the calling thread's nice value as far as allowed, trying each of
 * `levels` (most urgent first). Returns the nice value it runs at, or
 * undefined when none could be set.
 */
export const raiseCurrentThread = (levels: ReadonlyArray<number> = [-20, -10, -5]): number | undefined => {
  if (process.platform !== "linux") return undefined
  const tid = currentThreadId()
  if (tid === undefined) return undefined
  for (const level of levels) {
    try {
      Os.setPriority(tid, level)
      return Os.getPriority(tid)
    } catch {
      // not permitted at this level: try a milder one
    }
  }
  return undefined
}
