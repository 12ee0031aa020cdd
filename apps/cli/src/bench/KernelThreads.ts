/**
 * What the kernel's own threads took of the machine while a run streamed:
 * CPU time per second, and how long one of their runs lasted on average
 * (Linux `/proc/<pid>/schedstat`: time on a CPU in ns, time waiting for
 * one, number of runs).
 *
 * Why: on a kernel without preemption (`CONFIG_PREEMPT_NONE`, the default
 * mode of many cloud kernels, `PREEMPT_DYNAMIC` among them) a kernel thread
 * keeps its CPU until it yields, and every thread that needs that CPU waits,
 * a real-time one included. On the project's 2-core machine (a Firecracker
 * guest) the platform's DAMON (`kdamond.0`, sampling the access bits of 5
 * GiB of physical memory every 0.5 s to page out cold page cache) ran 16–44
 * ms at a stretch about every 0.5 s during `chiral bench` (`perf record -a`,
 * 2026-12-02): 9 of the robot's 11 event-loop stalls over 15 ms in that run
 * fell in one (the other two were its own start), and the actions queued
 * behind them arrived together. A table that misses a target can then say
 * so from its own run.
 */
import * as Fs from "node:fs"
import { fieldsOf } from "./MachineLimits.js"

/** One kernel thread's share of a run. */
export interface KernelThreadLoad {
  readonly name: string
  /** CPU time per second of the run, ms. */
  readonly ms_per_s: number
  /** CPU time per run on a CPU (from one wake-up to its yield), ms: a long one held its CPU that long. */
  readonly mean_run_ms: number
}

interface ThreadTimes {
  readonly name: string
  readonly runNs: number
  readonly runs: number
}

/** The kernel threads' CPU times at a moment (`performance.now()` ms). */
export interface Snapshot {
  readonly at: number
  readonly threads: ReadonlyMap<number, ThreadTimes>
}

/** `PF_KTHREAD` in `linux/sched.h`: the flags (field 9 of `/proc/<pid>/stat`) of a kernel thread. */
const PF_KTHREAD = 0x0020_0000

const kernelThread = (pid: number): ThreadTimes | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    const flags = Number(fieldsOf(stat)[6])
    if ((flags & PF_KTHREAD) === 0) return undefined
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
    const [runNs, , runs] = Fs.readFileSync(`/proc/${pid}/schedstat`, "latin1").trim().split(/\s+/).map(Number)
    return runNs === undefined || runs === undefined ? undefined : { name, runNs, runs }
  } catch {
    // gone meanwhile, or no schedstat on this kernel
    return undefined
  }
}

/** Every kernel thread's CPU time so far; undefined where `/proc` does not show them (not Linux, a container). */
export const snapshot = (): Snapshot | undefined => {
  if (process.platform !== "linux") return undefined
  let pids: Array<string>
  try {
    pids = Fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))
  } catch {
    return undefined
  }
  const threads = new Map<number, ThreadTimes>()
  for (const entry of pids) {
    const times = kernelThread(Number(entry))
    if (times !== undefined) threads.set(Number(entry), times)
  }
  // In a PID namespace (a container) or with hidepid, /proc shows no kernel
  // thread, kthreadd (pid 2) included: not visible, rather than none busy.
  return threads.has(2) ? { at: performance.now(), threads } : undefined
}

/**
 * The kernel threads that took at least `minMsPerS` of CPU per second
 * between two snapshots, busiest first, at most `top` of them. A thread that
 * started meanwhile (or took a pid another had) counts from zero; one that
 * ended is left out. The mean hides a rare long run among many short ones.
 */
export const between = (before: Snapshot, after: Snapshot, minMsPerS = 1, top = 3): ReadonlyArray<KernelThreadLoad> => {
  const seconds = (after.at - before.at) / 1000
  if (!(seconds > 0)) return []
  const loads: Array<KernelThreadLoad> = []
  for (const [pid, now] of after.threads) {
    // A pid taken meanwhile by another thread counts as a new one.
    const then = before.threads.get(pid)
    const earlier = then?.name === now.name ? then : undefined
    const ranNs = now.runNs - (earlier?.runNs ?? 0)
    // One run that held its CPU from before the first snapshot to after the second is still one.
    const runs = Math.max(1, now.runs - (earlier?.runs ?? 0))
    const msPerS = ranNs / 1e6 / seconds
    if (msPerS < minMsPerS) continue
    loads.push({ name: now.name, ms_per_s: Math.round(msPerS * 10) / 10, mean_run_ms: Math.round(ranNs / 1e6 / runs * 100) / 100 })
  }
  return loads.sort((a, b) => b.ms_per_s - a.ms_per_s).slice(0, top)
}

/** "kdamond.0 38 ms/s in runs of 19 ms, kworker/1:2 3 ms/s in runs of 0.05 ms", or "none over 1 ms/s". */
export const describe = (loads: ReadonlyArray<KernelThreadLoad>): string =>
  loads.length === 0
    ? "none over 1 ms/s"
    : loads.map((t) => `${t.name} ${t.ms_per_s} ms/s in runs of ${t.mean_run_ms} ms`).join(", ")
