// Page faults of the calling thread, for tests that pin where memory comes
// from: counts of pages, never times.
import * as Fs from "node:fs"

/**
 * Whether `threadFaults` can be read and counts 4 KiB pages: Linux on x64
 * (the counts the tests allow are in such pages).
 */
export const countsPages = process.platform === "linux" && process.arch === "x64"

/** Bytes per page the counts are in. */
export const pageBytes = 4096

/**
 * Page faults of this thread so far, minor and major (/proc/thread-self/stat,
 * fields 10 and 12, counted after the command name, which may hold ") "): a
 * page of this thread's made resident, and nothing of the threads beside it
 * (V8's compilers and collector fault pages in too).
 */
export const threadFaults = (): number => {
  const stat = Fs.readFileSync("/proc/thread-self/stat", "utf8")
  const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ")
  return Number(fields[7]) + Number(fields[9])
}
