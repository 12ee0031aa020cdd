// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and what this pins is process-wide (glibc's thresholds).
import { assert, describe, it } from "@effect/vitest"
import { retainFreedBuffers, uninitialized } from "@chiral/protocol"
import * as Fs from "node:fs"

// x64: 4 KiB pages (the count below), glibc: the allocator whose thresholds these are.
const glibc = process.platform === "linux" && process.arch === "x64" &&
  typeof (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
      ?.glibcVersionRuntime === "string"

/** Minor page faults of this process so far (/proc/self/stat, field 10). */
const minorFaults = (): number => Number(Fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")[7])

const page = 4096
const blockBytes = 14 * 1024 * 1024
const blocks = 4

/** Allocates the blocks and writes one byte per page; the page faults that took. */
const allocateAndTouch = (): { readonly held: Array<ArrayBuffer>; readonly faults: number } => {
  const held: Array<ArrayBuffer> = []
  const before = minorFaults()
  for (let i = 0; i < blocks; i++) {
    const buffer = uninitialized(blockBytes)
    const bytes = new Uint8Array(buffer)
    for (let at = 0; at < bytes.length; at += page) bytes[at] = 1
    held.push(buffer)
  }
  return { held, faults: minorFaults() - before }
}

/** Frees the blocks there and then (`transfer(0)` frees an ArrayBuffer's memory at once). */
const free = (held: Array<ArrayBuffer>) => {
  for (const buffer of held) (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0)
}

describe("retainFreedBuffers", () => {
  it.skipIf(!glibc)("keeps 56 MiB of freed 14 MiB buffers in the process: allocating them again faults no page in", () => {
    retainFreedBuffers()
    const first = allocateAndTouch()
    free(first.held)
    const again = allocateAndTouch()
    free(again.held)
    const pages = (blocks * blockBytes) / page
    // Without it, glibc maps blocks of this size afresh (or trims the heap's
    // top once more than twice its threshold is free there): every page again.
    assert.isBelow(again.faults, pages / 10, `${again.faults} page faults of ${pages} pages (first time ${first.faults})`)
  })

  it("can be called again, and does nothing more", () => {
    retainFreedBuffers()
    retainFreedBuffers()
  })
})
