import { assert, describe, it } from "@effect/vitest"
import * as SuppliedMemory from "../src/SuppliedMemory.js"

describe("SuppliedMemory", () => {
  it("reassembles into a buffer the policy's thread sent ahead, else into memory of its own", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const own = memory.take(100_000)
    assert.strictEqual(own.byteLength, 100_000)
    assert.strictEqual(memory.local, 1)

    const sent = SuppliedMemory.nextFor(100_000)
    assert.strictEqual(sent.byteLength, 100_000 + 6250, "sized as the reply before, and a sixteenth")
    assert.strictEqual(SuppliedMemory.nextFor(17_206_840).byteLength, 17_206_840 + 65_536, "at most 64 KiB more")
    memory.supply(sent)
    const next = memory.take(100_007)
    assert.strictEqual(next.buffer, sent, "a reply a few bytes longer fits")
    assert.strictEqual(next.byteOffset, 0)
    assert.strictEqual(next.byteLength, 100_007)
    assert.strictEqual(memory.supplied, 1)
    assert.notStrictEqual(memory.take(100_000).buffer, sent, "each supplied buffer serves one reply")
  })

  it("never gives a small reply a much larger buffer, nor a larger reply a smaller one", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const sent = new ArrayBuffer(1000)
    memory.supply(sent)
    assert.notStrictEqual(memory.take(500).buffer, sent, "a reply holds its whole buffer")
    assert.notStrictEqual(memory.take(1001).buffer, sent)
    assert.strictEqual(memory.take(900).buffer, sent)
  })

  it("takes the smallest buffer that fits", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const larger = new ArrayBuffer(1100)
    const smaller = new ArrayBuffer(1000)
    memory.supply(larger)
    memory.supply(smaller)
    assert.strictEqual(memory.take(990).buffer, smaller)
  })

  it("drops a buffer passed over maxSpare times: replies of that size stopped coming", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const stale = new ArrayBuffer(17_000_000)
    memory.supply(stale)
    // replies shrank: each takes what was supplied after the one before, and passes the old size over
    for (let i = 0; i < SuppliedMemory.maxSpare; i++) {
      memory.supply(SuppliedMemory.nextFor(2_000_000))
      assert.notStrictEqual(memory.take(2_000_000).buffer, stale)
    }
    assert.strictEqual(memory.waiting, 0, "nothing waits for a size that no longer comes")
    assert.strictEqual(memory.supplied, SuppliedMemory.maxSpare)
  })

  it("keeps at most maxSpare buffers, the newest", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const sent = Array.from({ length: SuppliedMemory.maxSpare + 1 }, () => new ArrayBuffer(1000))
    for (const b of sent) memory.supply(b)
    assert.strictEqual(memory.waiting, SuppliedMemory.maxSpare)
    assert.strictEqual(memory.take(1000).buffer, sent[1], "the oldest was dropped")
  })
})
