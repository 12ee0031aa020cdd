/**
 * What the machine itself allows, measured in the benchmark's own run so that
 * a table explains itself: how long copying one observation's bytes takes
 * into memory that is already mapped (memcpy), and into a freshly allocated
 * buffer (allocation + the page faults of touching new memory + the copy).
 * On machines where fresh memory is slow to touch, the second is many times
 * the first, and any path that allocates per observation pays it.
 *
 * The raw TCP round trip, the third limit, is measured by each `chiral bench`
 * run beside the protocol it is compared with (`raw p50` in the table).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import { percentiles } from "./Stats.js"

export interface MachineLimits {
  /** CPU model, logical cores, memory (GiB), kernel and Node, e.g. for the README. */
  readonly machine: string
  readonly bytes: number
  /** Copy of `bytes` into a buffer already touched, ms (median). */
  readonly memcpyMs: number
  /** Allocation of a fresh `bytes` buffer and the same copy, ms (median). */
  readonly freshCopyMs: number
  /** Minor page faults per fresh allocation + copy (Linux `/proc/self/stat` minflt), or NaN elsewhere. */
  readonly faultsPerFreshCopy: number
}

/**
 * The fields of a Linux `/proc/…/stat` file from field 3 (state) on, so that
 * field n of proc(5) is at index n − 3; throws where there is no such file.
 */
export const statFields = (path: string): ReadonlyArray<string> => fieldsOf(Fs.readFileSync(path, "utf8"))

/** The fields of the text of a `/proc/…/stat` file from field 3 on, as `statFields`. */
export const fieldsOf = (stat: string): ReadonlyArray<string> =>
  // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
  stat.slice(stat.lastIndexOf(")") + 2).split(" ")

/** Minor page faults of this process so far (field 10 of `/proc/self/stat`), NaN where there is none. */
export const minorFaults = (): number => {
  try {
    return Number(statFields("/proc/self/stat")[7])
  } catch {
    return Number.NaN
  }
}

export const describeMachine = (): string => {
  const cpus = Os.cpus()
  const gib = (Os.totalmem() / 2 ** 30).toFixed(0)
  return `${cpus[0]?.model.trim() ?? "unknown CPU"}, ${cpus.length} cores, ${gib} GiB, ${Os.type()} ${Os.release()}, Node ${process.version}`
}

const timed = (f: () => void): number => {
  const start = performance.now()
  f()
  return performance.now() - start
}

/**
 * Measures both copies `rounds` times each. The fresh buffers are kept until
 * the end, so the allocator cannot hand back memory it has already touched.
 */
export const measure = (bytes: number, rounds = 10): MachineLimits => {
  const source = Buffer.allocUnsafeSlow(bytes).fill(7)
  const target = Buffer.allocUnsafeSlow(bytes).fill(0)
  const memcpy: Array<number> = []
  for (let i = 0; i < rounds + 2; i++) {
    const ms = timed(() => target.set(source))
    if (i >= 2) memcpy.push(ms)
  }
  const kept: Array<Buffer> = []
  const fresh: Array<number> = []
  const faultsBefore = minorFaults()
  for (let i = 0; i < rounds; i++) {
    fresh.push(timed(() => {
      const buffer = Buffer.allocUnsafeSlow(bytes)
      buffer.set(source)
      kept.push(buffer)
    }))
  }
  const faults = (minorFaults() - faultsBefore) / rounds
  return {
    machine: describeMachine(),
    bytes,
    memcpyMs: percentiles(memcpy).p50,
    freshCopyMs: percentiles(fresh).p50,
    faultsPerFreshCopy: faults
  }
}

export const format = (limits: MachineLimits): string => {
  const mb = (limits.bytes / 1e6).toFixed(1)
  const faults = Number.isNaN(limits.faultsPerFreshCopy) ? "" : `, ${limits.faultsPerFreshCopy.toFixed(0)} page faults`
  return [
    `machine: ${limits.machine}`,
    `copy of one ${mb} MB observation: ${limits.memcpyMs.toFixed(2)} ms into touched memory, ` +
    `${limits.freshCopyMs.toFixed(2)} ms into a fresh buffer (${(limits.freshCopyMs / limits.memcpyMs).toFixed(0)}×${faults})`
  ].join("\n")
}
