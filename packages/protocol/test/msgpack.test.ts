import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Packr, Unpackr } from "msgpackr"
import { MsgpackIssue, MsgpackReader, MsgpackWriter } from "../src/Msgpack.js"

// Independent check: msgpackr, reading 64-bit ints as numbers when they are safe, as our reader does.
const unpack = (bytes: Uint8Array): unknown => new Unpackr({ useRecords: false, int64AsType: "number" }).unpack(bytes)

// msgpackr, our independent check, drops `__proto__` keys when reading (ours keeps them as data, see
// the reader tests), so generated values leave them out.
const jsonValue = fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"'))

const write = (f: (w: MsgpackWriter) => void) => {
  const w = new MsgpackWriter(4)
  f(w)
  return Buffer.from(w.bytes()).toString("hex")
}

const read = (hex: string, maxDepth = 64) => {
  const bytes = Buffer.from(hex, "hex")
  const r = new MsgpackReader(bytes, 0, bytes.length, maxDepth)
  const v = r.read()
  return { value: v, end: r.pos }
}

const issue = (hex: string, maxDepth = 64): MsgpackIssue => {
  try {
    read(hex, maxDepth)
  } catch (e) {
    if (e instanceof MsgpackIssue) return e
    throw e
  }
  return assert.fail("expected a MsgpackIssue")
}

describe("MsgpackWriter", () => {
  it("writes ints in their smallest form, unsigned forms for non-negative values", () => {
    const cases: Array<[number, string]> = [
      [0, "00"],
      [127, "7f"],
      [128, "cc80"],
      [255, "ccff"],
      [256, "cd0100"],
      [65535, "cdffff"],
      [65536, "ce00010000"],
      [2 ** 32 - 1, "ceffffffff"],
      [2 ** 32, "cf0000000100000000"],
      [-1, "ff"],
      [-32, "e0"],
      [-33, "d0df"],
      [-128, "d080"],
      [-129, "d1ff7f"],
      [-32768, "d18000"],
      [-32769, "d2ffff7fff"],
      [-(2 ** 31), "d280000000"],
      [-(2 ** 31) - 1, "d3ffffffff7fffffff"]
    ]
    for (const [v, hex] of cases) assert.strictEqual(write((w) => w.int(v)), hex, String(v))
  })

  it("writes Python-style numbers: integers as ints; -0, fractions and huge values as float64", () => {
    assert.strictEqual(write((w) => w.number(1)), "01")
    assert.strictEqual(write((w) => w.number(-0)), "cb8000000000000000")
    assert.strictEqual(write((w) => w.number(0.5)), "cb3fe0000000000000")
    assert.strictEqual(write((w) => w.number(2 ** 60)), "cb43b0000000000000")
    assert.strictEqual(write((w) => w.float64(1)), "cb3ff0000000000000")
    assert.strictEqual(write((w) => w.bigint(2n ** 63n)), "cf8000000000000000")
    assert.strictEqual(write((w) => w.bigint(-(2n ** 63n))), "d38000000000000000")
  })

  it("writes C++-style doubles: integral values (0.0 too) as ints, others float64; floats as float32", () => {
    assert.strictEqual(write((w) => w.compactDouble(600)), "cd0258")
    assert.strictEqual(write((w) => w.compactDouble(-0)), "00")
    assert.strictEqual(write((w) => w.compactDouble(0.125)), "cb3fc0000000000000")
    assert.strictEqual(write((w) => w.compactFloat(1.5)), "ca3fc00000")
  })

  it("uses fixstr/str8/str16/str32 by UTF-8 length", () => {
    assert.strictEqual(write((w) => w.str("")), "a0")
    assert.strictEqual(write((w) => w.str("a".repeat(31))).slice(0, 2), "bf")
    assert.strictEqual(write((w) => w.str("a".repeat(32))).slice(0, 4), "d920")
    assert.strictEqual(write((w) => w.str("é".repeat(16))).slice(0, 4), "d920") // 16 chars, 32 bytes
    assert.strictEqual(write((w) => w.str("a".repeat(256))).slice(0, 6), "da0100")
    assert.strictEqual(write((w) => w.str("a".repeat(65536))).slice(0, 10), "db00010000")
    assert.strictEqual(write((w) => w.str("😃")), "a4f09f9883")
  })

  it("uses fix/16/32 forms for arrays and maps", () => {
    assert.strictEqual(write((w) => w.arrayHeader(15)), "9f")
    assert.strictEqual(write((w) => w.arrayHeader(16)), "dc0010")
    assert.strictEqual(write((w) => w.arrayHeader(65536)), "dd00010000")
    assert.strictEqual(write((w) => w.mapHeader(15)), "8f")
    assert.strictEqual(write((w) => w.mapHeader(16)), "de0010")
  })

  it("agrees with msgpackr on arbitrary user values", () => {
    const value = jsonValue
    fc.assert(
      fc.property(value, (v) => {
        const w = new MsgpackWriter(16)
        w.value(v)
        const ours = w.bytes()
        assert.deepStrictEqual(unpack(ours), v)
        const r = new MsgpackReader(ours, 0, ours.length, 1000)
        assert.deepStrictEqual(r.read(), unpack(ours))
        assert.strictEqual(r.pos, ours.length)
      }),
      { numRuns: 300 }
    )
  })

  it("rejects cycles instead of overflowing the stack", () => {
    const a: Array<unknown> = []
    a.push(a)
    assert.throws(() => new MsgpackWriter().value(a), /nested more than 512/)
  })
})

describe("MsgpackReader", () => {
  it("reads what msgpackr writes", () => {
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true })
    fc.assert(
      fc.property(jsonValue, (v) => {
        const bytes = packr.pack(v)
        const r = new MsgpackReader(bytes, 0, bytes.length, 1000)
        assert.deepStrictEqual(r.read(), packr.unpack(bytes))
      }),
      { numRuns: 300 }
    )
  })

  it("keeps 64-bit ints beyond 2^53 exact as bigint", () => {
    assert.strictEqual(read("cf0020000000000001").value, 2n ** 53n + 1n)
    assert.strictEqual(read("cf001fffffffffffff").value, 2 ** 53 - 1)
    assert.strictEqual(read("d3ffdfffffffffffff").value, -(2n ** 53n) - 1n)
  })

  it("turns maps with non-string keys into Maps and keeps __proto__ an ordinary key", () => {
    assert.deepStrictEqual(read("8201a161a162c0").value, new Map<unknown, unknown>([[1, "a"], ["b", null]]))
    const v = read("81a95f5f70726f746f5f5f01").value as Record<string, unknown>
    assert.strictEqual(Object.getPrototypeOf(v), Object.prototype)
    assert.deepStrictEqual(Object.keys(v), ["__proto__"])
  })

  it("bounds depth before recursing further", () => {
    const deep = "91".repeat(5000) + "c0"
    assert.match(issue(deep).reason, /nested deeper than 64 levels/)
    assert.strictEqual(issue(deep).path.length, 64)
    assert.deepStrictEqual(read("91".repeat(3) + "c0", 4).value, [[[null]]])
  })

  it("rejects lengths that the remaining bytes cannot hold, before allocating", () => {
    assert.match(issue("ddffffffff").reason, /array of 4294967295 items cannot fit in the 0 bytes left/)
    assert.match(issue("dfffffffff00").reason, /map of 4294967295 entries cannot fit in the 1 bytes left/)
    assert.match(issue("dbffffffff").reason, /truncated: string needs 4294967295 bytes/)
    assert.match(issue("c6ffffffff").reason, /truncated: bin needs 4294967295 bytes/)
    assert.match(issue("92").reason, /array of 2 items cannot fit in the 0 bytes left/)
    assert.match(issue("cd01").reason, /truncated: uint16 needs 2 bytes, 1 left/)
  })

  it("rejects 0xc1, extension types and invalid UTF-8, naming where", () => {
    assert.match(issue("c1").reason, /0xc1/)
    assert.match(issue("d4010203").reason, /extension type \(0xd4\)/)
    const bad = issue("81a16192a1ffa2c328")
    assert.match(bad.reason, /not valid UTF-8/)
    assert.deepStrictEqual(bad.path, ["a", 0])
  })
})
