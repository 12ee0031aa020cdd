import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { Batch, Fragmenter, TransportMessage, ZenohReassemblyError } from "@chiral/zenoh"

const MOD = TransportMessage.snModulus(0x0a)

const concat = (chunks: ReadonlyArray<Uint8Array>) => Batch.concat(chunks.length === 0 ? [new Uint8Array(0)] : chunks)

/** Splits the written chunks back into batches and decodes each FRAGMENT. */
const decodeWire = (chunks: ReadonlyArray<Uint8Array>) => {
  const splitter = new Batch.BatchSplitter()
  splitter.push(concat(chunks))
  const out: Array<{ body: number; fragment: TransportMessage.Fragment }> = []
  for (let b = splitter.next(); b !== undefined; b = splitter.next()) {
    const [m, ...rest] = TransportMessage.decodeBatch(b)
    assert.strictEqual(rest.length, 0)
    assert(m?._tag === "Fragment")
    out.push({ body: b.length, fragment: m })
  }
  assert.strictEqual(splitter.pending, 0)
  return out
}

const sample = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff)

describe("BatchSplitter", () => {
  it.effect("any cut of the stream yields the same bodies; views when they fit one chunk", () =>
    Effect.sync(() => {
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 12 }),
          fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }),
          (sizes, cuts) => {
            const bodies = sizes.map((n, i) => sample(n).map((b) => b ^ i))
            const stream = concat(bodies.map(Batch.encode))
            const splitter = new Batch.BatchSplitter()
            const got: Array<Uint8Array> = []
            let at = 0
            let c = 0
            while (at < stream.length) {
              const n = cuts[c++ % cuts.length]!
              splitter.push(stream.subarray(at, at + n))
              at += n
              for (let p = splitter.nextParts(); p !== undefined; p = splitter.nextParts()) got.push(concat(p))
            }
            assert.strictEqual(splitter.pending, 0)
            assert.deepStrictEqual(got, bodies)
          }
        )
      )
      // a body inside one received chunk is a view of it, not a copy
      const chunk = Batch.encode(sample(10))
      const splitter = new Batch.BatchSplitter()
      splitter.push(chunk)
      const [view] = splitter.nextParts()!
      assert.strictEqual(view!.buffer, chunk.buffer)
    }))
})

describe("fragment / Reassembler", () => {
  it.effect("batches respect the budget, carry first/M markers and consecutive SNs that wrap", () =>
    Effect.sync(() => {
      const head = sample(17)
      const payload = sample(10_000)
      const out = Fragmenter.fragment([head, payload], { batchSize: 2048, reliable: true, firstSn: MOD - 2, snModulus: MOD })
      const wire = decodeWire(out.chunks)
      assert.strictEqual(wire.length, out.count)
      assert.isTrue(wire.every((w) => w.body <= 2048 - 2))
      assert.deepStrictEqual(wire.map((w) => w.fragment.sn), wire.map((_, i) => (MOD - 2 + i) % MOD))
      assert.strictEqual(out.nextSn, (MOD - 2 + out.count) % MOD)
      assert.deepStrictEqual(wire.map((w) => w.fragment.first), wire.map((_, i) => i === 0))
      assert.deepStrictEqual(wire.map((w) => w.fragment.more), wire.map((_, i) => i < wire.length - 1))
      assert.isTrue(wire.slice(0, -1).every((w) => w.body === 2046), "full batches except the last")
      assert.deepStrictEqual(concat(wire.map((w) => w.fragment.payload)), concat([head, payload]))
      // the payload travels as views of the caller's buffer
      assert.isTrue(out.chunks.some((c) => c.buffer === payload.buffer))
    }))

  it.effect("reassembles whatever the batch size, in pieces or parts", () =>
    Effect.sync(() => {
      fc.assert(
        fc.property(fc.integer({ min: 64, max: 4000 }), fc.integer({ min: 1, max: 20_000 }), (batchSize, n) => {
          const message = sample(n)
          const wire = decodeWire(Fragmenter.fragment([message], { batchSize, reliable: false, firstSn: 5, snModulus: MOD }).chunks)
          const r = new Fragmenter.Reassembler({ limit: 1 << 20, markers: true, snModulus: MOD })
          let whole: Uint8Array | undefined
          for (const w of wire) {
            const p = w.fragment.payload
            // alternate whole payloads and payloads split in two parts
            whole = r.push(w.fragment.sn % 2 === 0 ? w.fragment : { ...w.fragment, payload: [p.subarray(0, 1), p.subarray(1)] })
          }
          assert.deepStrictEqual(whole, message)
          assert.isFalse(r.inProgress)
        })
      )
    }))

  it.effect("a lead places the message at the asked offset modulo 8, also when the buffer grows", () =>
    Effect.sync(() => {
      for (const hint of [undefined, 100]) {
        for (let lead = 0; lead < 8; lead++) {
          // larger than the first allocation without a hint (64 KiB): the buffer grows
          const message = sample(200_000)
          const wire = decodeWire(Fragmenter.fragment([message], { batchSize: 4000, reliable: true, firstSn: 0, snModulus: MOD }).chunks)
          const r = new Fragmenter.Reassembler({
            limit: 1 << 20,
            markers: true,
            snModulus: MOD,
            sizeHint: () => hint,
            lead: () => lead
          })
          let whole: Uint8Array | undefined
          for (const w of wire) whole = r.push(w.fragment)
          assert.deepStrictEqual(whole, message)
          assert.strictEqual(whole!.byteOffset % 8, lead)
        }
      }
    }))

  it.effect("oversize: a typed error, early when the size hint already says so", () =>
    Effect.sync(() => {
      const wire = decodeWire(Fragmenter.fragment([sample(5000)], { batchSize: 1000, reliable: true, firstSn: 0, snModulus: MOD }).chunks)
      const r = new Fragmenter.Reassembler({ limit: 3000, markers: true, snModulus: MOD })
      let error: unknown
      try {
        for (const w of wire) r.push(w.fragment)
      } catch (e) {
        error = e
      }
      assert.instanceOf(error, ZenohReassemblyError)
      assert.strictEqual((error as ZenohReassemblyError).limit, 3000)
      assert.isFalse(r.inProgress)
      const hinted = new Fragmenter.Reassembler({ limit: 3000, markers: true, snModulus: MOD, sizeHint: () => 5000 })
      try {
        hinted.push(wire[0]!.fragment)
        assert.fail("expected an error on the first piece")
      } catch (e) {
        assert.instanceOf(e, ZenohReassemblyError)
        assert.match((e as ZenohReassemblyError).reason, /announced/)
      }
    }))

  it.effect("missing first marker, SN gaps and drop markers discard the partial message", () =>
    Effect.sync(() => {
      const pieces = decodeWire(Fragmenter.fragment([sample(3000)], { batchSize: 1000, reliable: true, firstSn: 10, snModulus: MOD }).chunks).map((w) => w.fragment)
      assert.strictEqual(pieces.length, 4)
      const r = new Fragmenter.Reassembler({ limit: 1 << 20, markers: true, snModulus: MOD })
      // tail without its start: ignored
      assert.strictEqual(r.push(pieces[1]!), undefined)
      assert.isFalse(r.inProgress)
      // a gap: the partial message is dropped, and the following tail ignored
      r.push(pieces[0]!)
      r.push(pieces[2]!)
      assert.isFalse(r.inProgress)
      assert.strictEqual(r.push(pieces[3]!), undefined)
      // drop marker
      r.push(pieces[0]!)
      assert.isTrue(r.inProgress)
      r.push({ ...pieces[1]!, drop: true })
      assert.isFalse(r.inProgress)
      // a new first restarts; then the full sequence completes
      r.push(pieces[0]!)
      r.push(pieces[0]!)
      assert.strictEqual(r.collected, pieces[0]!.payload.length)
      r.push(pieces[1]!)
      r.push(pieces[2]!)
      assert.deepStrictEqual(r.push(pieces[3]!), sample(3000))
      // without markers (patch 0) any piece on an empty buffer starts a message
      const old = new Fragmenter.Reassembler({ limit: 1 << 20, markers: false, snModulus: MOD })
      old.push({ ...pieces[1]!, first: false })
      assert.isTrue(old.inProgress)
    }))

  it.effect("with receiveMemory: messages are taken from it; outgrown and abandoned buffers go back, delivered ones never", () =>
    Effect.sync(() => {
      const taken: Array<ArrayBuffer> = []
      const given: Array<ArrayBuffer> = []
      const memory = {
        take: (size: number) => {
          const view = new Uint8Array(size).fill(0xee) // stale bytes: every one of the message's must be written
          taken.push(view.buffer)
          return view
        },
        put: (buffer: ArrayBuffer) => void given.push(buffer)
      }
      const r = new Fragmenter.Reassembler({ limit: 1 << 20, markers: true, snModulus: MOD, memory, lead: () => 3 })
      // larger than the first allocation without a hint (64 KiB): the buffer grows twice
      const message = sample(200_000)
      const wire = decodeWire(Fragmenter.fragment([message], { batchSize: 4000, reliable: true, firstSn: 0, snModulus: MOD }).chunks)
      let whole: Uint8Array | undefined
      for (const w of wire) whole = r.push(w.fragment)
      assert.deepStrictEqual(whole, message)
      assert.strictEqual(whole!.buffer, taken.at(-1), "delivered in memory taken from receiveMemory")
      assert.deepStrictEqual(given, taken.slice(0, -1), "every outgrown buffer went back, the delivered one did not")

      // an abandoned partial message (a gap, a drop marker, a new first) goes back too
      const pieces = decodeWire(Fragmenter.fragment([sample(3000)], { batchSize: 1000, reliable: true, firstSn: 10, snModulus: MOD }).chunks).map((w) => w.fragment)
      for (const abandon of [() => r.push(pieces[2]!), () => r.push({ ...pieces[1]!, drop: true }), () => r.push(pieces[0]!)]) {
        given.length = 0
        r.push(pieces[0]!)
        const partial = taken.at(-1)
        abandon()
        assert.deepStrictEqual(given, [partial])
      }
    }))
})
