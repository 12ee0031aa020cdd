import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { ZBuf, ZenohDecodeError, Zint } from "@chiral/zenoh"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

const failure = (f: () => unknown): ZenohDecodeError => {
  try {
    f()
  } catch (e) {
    if (e instanceof ZenohDecodeError) return e
    throw e
  }
  throw new Error("expected a ZenohDecodeError")
}

describe("zint", () => {
  it.effect("encodes the documented examples and edges", () =>
    Effect.sync(() => {
      const table: Array<[number, string]> = [
        [0, "00"],
        [1, "01"],
        [127, "7f"],
        [128, "8001"],
        [2048, "8010"],
        [16383, "ff7f"],
        [16384, "808001"],
        [150000, "f09309"],
        [0x0fff_ffff, "ffffff7f"], // the largest 32-bit-resolution SN fits 4 bytes
        [0xffff_ffff, "ffffffff0f"],
        [Number.MAX_SAFE_INTEGER, "ffffffffffffff0f"]
      ]
      for (const [n, bytes] of table) {
        assert.strictEqual(hex(Zint.encode(n)), bytes, `encode ${n}`)
        assert.strictEqual(Zint.lengthOf(n), bytes.length / 2, `lengthOf ${n}`)
        assert.deepStrictEqual(Zint.decode(Buffer.from(bytes, "hex")), { value: n, next: bytes.length / 2 })
      }
    }))

  it.effect("u64: the ninth byte carries 8 full bits", () =>
    Effect.sync(() => {
      assert.strictEqual(hex(Zint.encode(Zint.MAX_Z64)), "ffffffffffffffffff")
      assert.strictEqual(hex(Zint.encode(1n << 56n)), "808080808080808001")
      assert.strictEqual(hex(Zint.encode(0x80n << 56n)), "808080808080808080")
      assert.deepStrictEqual(Zint.decode64(Buffer.from("ffffffffffffffffff", "hex")), { value: Zint.MAX_Z64, next: 9 })
      // a continuation bit on the 9th byte is value, not "more": decoding stops there
      assert.deepStrictEqual(Zint.decode64(Buffer.from("80808080808080808000", "hex")), { value: 0x80n << 56n, next: 9 })
    }))

  it.effect("number and bigint encoders agree; decode inverts encode", () =>
    Effect.sync(() => {
      fc.assert(
        fc.property(fc.maxSafeNat(), (n) => {
          const bytes = Zint.encode(n)
          assert.strictEqual(hex(bytes), hex(Zint.encode(BigInt(n))))
          assert.deepStrictEqual(Zint.decode(bytes), { value: n, next: bytes.length })
        })
      )
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: Zint.MAX_Z64 }), (n) => {
          const bytes = Zint.encode(n)
          assert.strictEqual(bytes.length, Zint.lengthOf64(n))
          assert.deepStrictEqual(Zint.decode64(bytes), { value: n, next: bytes.length })
        })
      )
    }))

  it.effect("writers and readers agree at an offset", () =>
    Effect.sync(() => {
      const w = new ZBuf.ZWriter(1)
      w.u8(0xaa).zint(300).zint64(1n << 60n).string("chiral/c2s").u16le(2048)
      const r = new ZBuf.ZReader(w.finish())
      assert.strictEqual(r.u8("x"), 0xaa)
      assert.strictEqual(r.zint("x"), 300)
      assert.strictEqual(r.zint64("x"), 1n << 60n)
      assert.strictEqual(r.string("x"), "chiral/c2s")
      assert.strictEqual(r.u16le("x"), 2048)
      assert.strictEqual(r.remaining, 0)
    }))

  it.effect("truncated, oversized and too-large values are typed errors naming field and offset", () =>
    Effect.sync(() => {
      const r = new ZBuf.ZReader(Buffer.from("0580", "hex"))
      assert.strictEqual(r.zint("first"), 5)
      const e = failure(() => r.zint("FRAME SN"))
      assert.strictEqual(e.what, "FRAME SN")
      assert.strictEqual(e.offset, 1)
      assert.match(e.reason, /unexpected end/)
      assert.strictEqual(e._tag, "ZenohDecodeError")
      const big = failure(() => new ZBuf.ZReader(Zint.encode(65536)).zint("keyexpr id", Zint.MAX_Z16))
      assert.match(big.reason, /65536 exceeds the limit 65535/)
      const unsafe = failure(() => new ZBuf.ZReader(Zint.encode(1n << 60n)).zint("length"))
      assert.match(unsafe.reason, /exceeds/)
      const utf8 = failure(() => new ZBuf.ZReader(Buffer.from("02c328", "hex")).string("suffix"))
      assert.strictEqual(utf8.reason, "invalid UTF-8")
      const slice = failure(() => new ZBuf.ZReader(Buffer.from("05616263", "hex")).zbytes("payload"))
      assert.match(slice.reason, /needs 5 bytes, only 3 left/)
    }))
})
