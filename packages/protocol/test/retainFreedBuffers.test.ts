// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and what this pins is process-wide (glibc's thresholds).
import { assert, describe, it } from "@effect/vitest"
import { reserveHeapFor, retainFreedBuffers, uninitialized } from "@chiral/protocol"
import * as Fs from "node:fs"

// x64: 4 KiB pages (the count below), glibc: the allocator whose thresholds these are.
const glibc = process.platform === "linux" && process.arch === "x64" &&
  typeof (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
      ?.glibcVersionRuntime === "string"

/** Minor page faults of this process so far (/proc/self/stat, field 10). */
const minorFaults = (): number => Number(Fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")[7])

const page = 4096
const MiB = 1024 * 1024

/** Allocates `blocks` blocks and writes one byte per page; the page faults that took. */
const allocateAndTouch = (blocks: number, blockBytes: number): { readonly held: Array<ArrayBuffer>; readonly faults: number } => {
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

/** Allocates, touches and frees the blocks twice; the page faults of the second time, of how many pages. */
const twice = (blocks: number, blockBytes: number) => {
  const first = allocateAndTouch(blocks, blockBytes)
  free(first.held)
  const again = allocateAndTouch(blocks, blockBytes)
  free(again.held)
  return { first: first.faults, again: again.faults, pages: (blocks * blockBytes) / page }
}

// In this order: the first test's tuning is the process's, and the second lays out on top of it.
describe("retainFreedBuffers, reserveHeapFor", () => {
  it.skipIf(!glibc)("keeps 56 MiB of freed 14 MiB buffers in the process: allocating them again faults no page in", () => {
    retainFreedBuffers()
    const { again, first, pages } = twice(4, 14 * MiB)
    // Without it, glibc maps blocks of this size afresh (or trims the heap's
    // top once more than twice its threshold is free there): every page again.
    assert.isBelow(again, pages / 10, `${again} page faults of ${pages} pages (first time ${first})`)
  })

  it.skipIf(!glibc)("with room laid out for 8 MiB messages, 80 MiB of them freed together stay in the process too", () => {
    reserveHeapFor(8 * MiB)
    // More than glibc keeps at its heap's top (64 MiB): without the room, all handed back.
    const { again, first, pages } = twice(10, 8 * MiB)
    assert.isBelow(again, pages / 10, `${again} page faults of ${pages} pages (first time ${first})`)
  })

  it("can be called again, and does nothing more", () => {
    retainFreedBuffers()
    retainFreedBuffers()
    reserveHeapFor(8 * MiB)
    reserveHeapFor(1024)
  })
})
