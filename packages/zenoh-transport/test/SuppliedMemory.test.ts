import { assert, describe, it } from "@effect/vitest"
import * as SuppliedMemory from "../src/SuppliedMemory.js"

describe("SuppliedMemory", () => {
  it("reassembles into a buffer the policy's thread sent ahead, else into memory of its own", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const own = memory.take(1000)
    assert.strictEqual(own.byteLength, 1000)
    assert.strictEqual(memory.local, 1)

    const sent = SuppliedMemory.nextFor(own.buffer as ArrayBuffer)
    assert.strictEqual(sent.byteLength, 1000, "sized as the reply before it")
    memory.supply(sent)
    const next = memory.take(990)
    assert.strictEqual(next.buffer, sent)
    assert.strictEqual(next.byteOffset, 0)
    assert.strictEqual(next.byteLength, 990)
    assert.strictEqual(memory.supplied, 1)
    assert.notStrictEqual(memory.take(990).buffer, sent, "each supplied buffer serves one reply")
  })

  it("never gives a small reply a much larger buffer, nor a larger reply a smaller one", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const sent = new ArrayBuffer(1000)
    memory.supply(sent)
    assert.notStrictEqual(memory.take(500).buffer, sent, "a reply holds its whole buffer")
    assert.notStrictEqual(memory.take(1001).buffer, sent)
    assert.strictEqual(memory.take(900).buffer, sent)
  })

  it("keeps at most maxSpare buffers, the newest", () => {
    const memory = new SuppliedMemory.SuppliedMemory()
    const sent = Array.from({ length: SuppliedMemory.maxSpare + 1 }, () => new ArrayBuffer(1000))
    for (const b of sent) memory.supply(b)
    const served = Array.from({ length: SuppliedMemory.maxSpare + 1 }, () => memory.take(1000).buffer)
    assert.deepStrictEqual(served.slice(0, SuppliedMemory.maxSpare), sent.slice(1))
    assert.strictEqual(memory.local, 1, "the oldest was dropped")
  })
})
