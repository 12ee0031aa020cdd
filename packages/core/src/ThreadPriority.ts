/**
 * Best-effort scheduling priority for the calling thread (Linux).
 *
 * Why: on a machine as small as two cores, a thread that must act at a given
 * millisecond (the action dispatcher) waits whenever other threads hold both
 * cores: V8's garbage-collection helpers, the policy's own work, the kernel
 * copying 17 MB observations.
 *
 * Two levels, tried in order by `prioritizeCurrentThread`:
 *  - **real-time** (`SCHED_FIFO`, priority 1): the thread runs as soon as it
 *    wakes, ahead of every ordinary thread, instead of waiting its turn. A
 *    lower nice value alone only gives it a larger share: traced on the
 *    project's 2-core machine (`chiral bench`, 8 cameras, actions at 30 Hz),
 *    the dispatcher at nice −20 still waited 5–8 ms for a core behind the
 *    policy's GC helpers in its worst ticks, and its writes were late by
 *    3.1–9.4 ms at p99; at `SCHED_FIFO` 1, 1.4–3.7 ms. Priority 1 is the lowest
 *    real-time level, below any real-time loop a robot runs itself.
 *    Node has no call for it, so util-linux's `chrt` (present on every
 *    mainstream distribution) sets it on this thread's id, with
 *    reset-on-fork: threads and processes started from here are ordinary.
 *    Needs CAP_SYS_NICE or a `RLIMIT_RTPRIO` allowance (`ulimit -r`,
 *    limits.conf); where neither is there, `chrt` is not even started: it
 *    forks the process, which took 4 ms in a small one and 35 ms at 720 MB
 *    resident (page tables copied; the main thread's page faults wait
 *    meanwhile), once per dispatcher, i.e. per connection. Only
 *    for threads that block between their ticks and never spin: on
 *    machines tuned for real-time work `sched_rt_runtime_us` is often −1,
 *    and then nothing stops a real-time thread that does not block.
 *  - **nice** (`setpriority(PRIO_PROCESS, tid)`, which Linux applies to one
 *    thread; `/proc/thread-self` names the calling thread, so Node's
 *    `os.setPriority` can address a worker thread): needs CAP_SYS_NICE or a
 *    `RLIMIT_NICE` allowance (`ulimit -e`).
 *
 * Without any of these rights nothing changes, and the answer says so.
 * Elsewhere than Linux it does nothing. `CHIRAL_DISPATCH_PRIORITY` in the
 * environment chooses the most a process asks for: `realtime` (default),
 * `nice`, or `normal` (nothing). Check what a thread got with
 * `ps -eLo tid,cls,rtprio,ni,comm` (class FF, rtprio 1 for real-time).
 */
import * as ChildProcess from "node:child_process"
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

/** A thread's or process's scheduling policy and real-time priority, from the text of its `/proc/…/stat`. */
export const policyOfStat = (stat: string): { readonly policy: number; readonly rtPriority: number } | undefined => {
  // The command name (field 2) may hold spaces and parentheses: count from its closing one.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // fields[0] is field 3 (state); rt_priority is field 40, policy field 41 (proc(5)).
  const rtPriority = Number(fields[37])
  const policy = Number(fields[38])
  return Number.isInteger(policy) && Number.isInteger(rtPriority) ? { policy, rtPriority } : undefined
}

/** The calling thread's scheduling policy and real-time priority, read from `/proc/thread-self/stat`. */
export const currentThreadPolicy = (): { readonly policy: number; readonly rtPriority: number } | undefined => {
  try {
    return policyOfStat(Fs.readFileSync("/proc/thread-self/stat", "latin1"))
  } catch {
    return undefined
  }
}

/** `SCHED_FIFO` in `sched.h`. */
export const SCHED_FIFO = 1

/** `CAP_SYS_NICE` in `linux/capability.h`. */
const CAP_SYS_NICE = 23n

/**
 * Whether this process may ask for real-time scheduling at `priority`:
 * CAP_SYS_NICE among its effective capabilities, or a soft `RLIMIT_RTPRIO`
 * of at least `priority` (`/proc/self/status`, `/proc/self/limits`).
 */
export const mayUseRealtime = (priority: number): boolean => {
  try {
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(Fs.readFileSync("/proc/self/status", "latin1"))?.[1]
    if (capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_SYS_NICE) & 1n) === 1n) return true
    const soft = /^Max realtime priority\s+(\S+)/m.exec(Fs.readFileSync("/proc/self/limits", "latin1"))?.[1]
    return soft === "unlimited" || (soft !== undefined && Number(soft) >= priority)
  } catch {
    return false
  }
}

/** Where util-linux installs `chrt`; never looked up on PATH (a process that may raise priorities is often root). */
const chrtPaths = ["/usr/bin/chrt", "/bin/chrt"]

/**
 * `chrt` where util-linux installs it, when a thread of this process could
 * be made real-time at `priority` with it (Linux, and the right); else undefined.
 */
const realtimeChrt = (priority: number): string | undefined => {
  if (process.platform !== "linux") return undefined
  const chrt = chrtPaths.find((path) => Fs.existsSync(path))
  return chrt !== undefined && mayUseRealtime(priority) ? chrt : undefined
}

/** Whether a thread of this process could be made real-time at `priority`: Linux, `chrt` where we look for it, and the right. */
export const realtimeAvailable = (priority = 1): boolean => realtimeChrt(priority) !== undefined

/**
 * Whether Linux lets real-time threads take a whole core
 * (`/proc/sys/kernel/sched_rt_runtime_us` is −1, as on machines tuned for
 * real-time work): then nothing stops a real-time thread that does not block.
 * False where it keeps its default share for ordinary threads (95%), or does not say.
 */
export const realtimeUnthrottled = (): boolean => {
  try {
    return Fs.readFileSync("/proc/sys/kernel/sched_rt_runtime_us", "latin1").trim() === "-1"
  } catch {
    return false
  }
}

/**
 * Puts the calling thread in `SCHED_FIFO` at `priority` (1–99) with
 * reset-on-fork, through `chrt`. Returns whether the kernel now reports that
 * policy: false without `chrt`, without the right, or off Linux.
 */
export const realtimeCurrentThread = (priority = 1): boolean => {
  const chrt = realtimeChrt(priority)
  const tid = currentThreadId()
  if (chrt === undefined || tid === undefined) return false
  try {
    ChildProcess.execFileSync(chrt, ["--fifo", "--reset-on-fork", "--pid", String(priority), String(tid)], {
      stdio: "ignore",
      timeout: 5_000
    })
  } catch {
    return false
  }
  const now = currentThreadPolicy()
  return now !== undefined && now.policy === SCHED_FIFO && now.rtPriority === priority
}

/** What `prioritizeCurrentThread` obtained. */
export type Obtained =
  | { readonly _tag: "Realtime"; readonly priority: number }
  | { readonly _tag: "Nice"; readonly nice: number }
  /** `asked`: the preference was `normal`; `notAllowed`: no right to raise it. */
  | { readonly _tag: "Unchanged"; readonly because: "asked" | "notAllowed" }

/** How far `prioritizeCurrentThread` may go. */
export type Preference = "realtime" | "nice" | "normal"

/** `CHIRAL_DISPATCH_PRIORITY` from the environment; `realtime` when unset or not one of the three. */
export const preferenceFromEnvironment = (): Preference => {
  const value = process.env.CHIRAL_DISPATCH_PRIORITY
  return value === "nice" || value === "normal" ? value : "realtime"
}

/**
 * The most urgent scheduling the system allows this thread, up to
 * `preference`: real-time (`SCHED_FIFO` 1), else the lowest nice value
 * allowed, else unchanged. For a thread whose one job is timed and that
 * blocks between its ticks.
 */
export const prioritizeCurrentThread = (preference: Preference = preferenceFromEnvironment()): Obtained => {
  if (preference === "normal") return { _tag: "Unchanged", because: "asked" }
  if (preference === "realtime" && realtimeCurrentThread(1)) return { _tag: "Realtime", priority: 1 }
  const nice = raiseCurrentThread()
  return nice === undefined ? { _tag: "Unchanged", because: "notAllowed" } : { _tag: "Nice", nice }
}

/** What a thread obtained, for a log line: "real-time (SCHED_FIFO 1)", "at nice −20", or why neither. */
export const describe = (obtained: Obtained): string => {
  switch (obtained._tag) {
    case "Realtime":
      return `real-time (SCHED_FIFO ${obtained.priority})`
    case "Nice":
      return `at nice ${obtained.nice} (real-time not allowed or not asked for; see ThreadPriority)`
    case "Unchanged":
      // From what the thread reported: its environment may not be this one's.
      return obtained.because === "asked"
        ? "at normal priority (CHIRAL_DISPATCH_PRIORITY=normal)"
        : "at normal priority (no right to raise it: CAP_SYS_NICE, or RLIMIT_RTPRIO / RLIMIT_NICE)"
  }
}
