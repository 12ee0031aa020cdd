// In a file of its own: vitest runs each file in a process of its own
// (`pool: "forks"`), and what this pins is process-wide (glibc's thresholds,
// the heap's layout). Counts of pages decide, never the machine's speed.
import { assert, describe, it } from "@effect/vitest"
import { reserveHeapFor, retainFreedBuffers, uninitialized } from "@chiral/protocol"
import * as Fs from "node:fs"
import { threadFaults } from "@chiral/testing/PageFaults"

// x64: 4 KiB pages (the counts below), glibc: the allocator whose thresholds these are.
const glibc = process.platform === "linux" && process.arch === "x64" &&
  typeof (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
      ?.glibcVersionRuntime === "string"

/** Resident memory of this process, in pages (/proc/self/statm, field 2). */
const residentPages = (): number => Number(Fs.readFileSync("/proc/self/statm", "utf8").split(" ")[1])

const page = 4096
const MiB = 1024 * 1024

/** Allocates `blocks` blocks and writes one byte per page; the page faults that took. */
const allocateAndTouch = (blocks: number, blockBytes: number): { readonly held: Array<ArrayBuffer>; readonly faults: number } => {
  const held: Array<ArrayBuffer> = []
  const before = threadFaults()
  for (let i = 0; i < blocks; i++) {
    const buffer = uninitialized(blockBytes)
    const bytes = new Uint8Array(buffer)
    for (let at = 0; at < bytes.length; at += page) bytes[at] = 1
    held.push(buffer)
  }
  return { held, faults: threadFaults() - before }
}

/** Frees the blocks there and then (`transfer(0)` frees an ArrayBuffer's memory at once); the pages that left the process. */
const free = (held: Array<ArrayBuffer>): number => {
  const before = residentPages()
  for (const buffer of held) (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0)
  return before - residentPages()
}

/**
 * Allocates, touches and frees the blocks twice: the page faults of the
 * second time, and the pages handed back by the first free, of how many.
 */
const twice = (blocks: number, blockBytes: number) => {
  const first = allocateAndTouch(blocks, blockBytes)
  const handedBack = free(first.held)
  const again = allocateAndTouch(blocks, blockBytes)
  free(again.held)
  return { again: again.faults, handedBack, pages: (blocks * blockBytes) / page }
}

// In this order: the first test's tuning is the process's, and the others lay out room on top of it.
describe("retainFreedBuffers, reserveHeapFor", () => {
  it.skipIf(!glibc)("keeps 56 MiB of freed 14 MiB buffers in the process: allocating them again faults no page in", () => {
    retainFreedBuffers()
    const { again, handedBack, pages } = twice(4, 14 * MiB)
    // Without it, glibc maps blocks of this size afresh (or trims the heap's
    // top once more than twice its threshold is free there): every page again.
    assert.isBelow(handedBack, pages / 10, `${handedBack} of ${pages} pages handed back`)
    assert.isBelow(again, pages / 10, `${again} page faults of ${pages} pages`)
  })

  it.skipIf(!glibc)("laying out room takes (almost) no memory", () => {
    const faults = threadFaults()
    reserveHeapFor(8 * MiB)
    // 12 blocks of 9 MiB and the one kept: only their headers are written
    assert.isBelow(threadFaults() - faults, 200)
  })

  it.skipIf(!glibc)("with room laid out for 8 MiB messages, 96 MiB of them freed together stay in the process too", () => {
    reserveHeapFor(8 * MiB)
    // More than glibc keeps at its heap's top (64 MiB): without the room, all handed back.
    const { again, handedBack, pages } = twice(12, 8 * MiB)
    assert.isBelow(handedBack, pages / 10, `${handedBack} of ${pages} pages handed back`)
    assert.isBelow(again, pages / 10, `${again} page faults of ${pages} pages`)
  })

  it.skipIf(!glibc)("a message a few bytes longer lays out no room again", () => {
    const faults = threadFaults()
    reserveHeapFor(8 * MiB + 64)
    // nothing allocated at all: no header written, no page made resident by
    // this thread (laying out room again would write 13: 12 blocks and the one kept)
    assert.isBelow(threadFaults() - faults, 5)
  })
})
