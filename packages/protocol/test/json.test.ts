// The one JSON convention of everything chiral prints (src/Json.ts): valid JSON
// for every value, NaN/±Infinity as "NaN"/"Infinity"/"-Infinity", -0 as -0.0,
// bigints exact; otherwise exactly JSON.stringify's text. The field frames
// (fixtures/field, copied from ../shared/field) carry the non-finite values as
// the Python reference and a hand-written encoder put them on the wire.
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Result } from "effect"
import {
  decodeFrame,
  describeMessage,
  type Message,
  nonFiniteText,
  reviveNonFinite,
  stringifyDescription,
  stringifyJson,
  Tensor
} from "@chiral/protocol"

const fieldDir = fileURLToPath(new URL("./fixtures/field/", import.meta.url))

const field = (name: string): Message => {
  const decoded = decodeFrame(new Uint8Array(fs.readFileSync(`${fieldDir}${name}.bin`)))
  if (Result.isFailure(decoded)) return assert.fail(decoded.failure.message)
  return decoded.success
}

/** Parses strictly (JSON.parse rejects bare NaN/Infinity) and keeps -0 as -0. */
const parse = (text: string): unknown => JSON.parse(text)

describe("field frames as JSON", () => {
  it("apply_action_nonfinite (Python's encoder): NaN, +Inf, -Inf, -0 stay distinct and parse", () => {
    const message = field("apply_action_nonfinite")
    for (const indent of [undefined, 1]) {
      const described = parse(stringifyJson(describeMessage(message), indent)) as {
        action: { dtype: string; shape: Array<number>; data: Array<unknown> }
        obs_timestamps: Record<string, number>
      }
      assert.strictEqual(described.action.dtype, "float32")
      assert.deepStrictEqual(described.action.shape, [7])
      const data = described.action.data
      assert.deepStrictEqual(data.slice(0, 3), ["NaN", "Infinity", "-Infinity"])
      assert.isTrue(Object.is(data[3], -0), `-0 read back as ${String(data[3])}`)
      assert.strictEqual(data[4], Math.fround(3.4e38))
      assert.deepStrictEqual(data.slice(5), [1, 2])
      assert.deepStrictEqual(described.obs_timestamps, { cam_0: 12.5 })
      // each string is the number it stands for, read back with Number()
      assert.deepStrictEqual(
        data.map((x) => Number(x)),
        [NaN, Infinity, -Infinity, -0, Math.fround(3.4e38), 1, 2]
      )
    }
  })

  it("obs_proprio_float16_nonfinite: float16 +Inf and NaN stay distinct; bools stay booleans", () => {
    const text = stringifyJson(describeMessage(field("obs_proprio_float16_nonfinite")), 1)
    const described = parse(text) as { obs: { proprios: Record<string, unknown> } }
    assert.deepStrictEqual(described.obs.proprios["h"], { dtype: "float16", shape: [4], data: [1, -2, "Infinity", "NaN"] })
    assert.deepStrictEqual(described.obs.proprios["b"], { dtype: "bool", shape: [3], data: [true, false, true] })
  })
})

describe("stringifyJson", () => {
  it("writes NaN, +Infinity, -Infinity as strings, -0 as -0.0, bigints exact", () => {
    assert.strictEqual(
      stringifyJson([NaN, Infinity, -Infinity, -0, 0, 1.5, 2n ** 64n - 1n, -(2n ** 63n)]),
      "[\"NaN\",\"Infinity\",\"-Infinity\",-0.0,0,1.5,18446744073709551615,-9223372036854775808]"
    )
    assert.deepStrictEqual(nonFiniteText, { nan: "NaN", positiveInfinity: "Infinity", negativeInfinity: "-Infinity" })
    // the same writer under the name the description API had
    assert.strictEqual(stringifyDescription([NaN, -Infinity]), "[\"NaN\",\"-Infinity\"]")
  })

  it("non-finite values anywhere: object members, nested arrays, typed arrays, the top level", () => {
    const value = { reward: NaN, nested: [[Infinity]], f32: Float32Array.of(-Infinity, -0), f64: new Float64Array([NaN]) }
    const text = stringifyJson(value)
    assert.strictEqual(
      text,
      "{\"reward\":\"NaN\",\"nested\":[[\"Infinity\"]],\"f32\":[\"-Infinity\",-0.0],\"f64\":[\"NaN\"]}"
    )
    assert.deepStrictEqual(JSON.parse(text, reviveNonFinite), {
      reward: NaN,
      nested: [[Infinity]],
      f32: [-Infinity, -0],
      f64: [NaN]
    })
    assert.strictEqual(stringifyJson(NaN), "\"NaN\"")
    assert.strictEqual(stringifyJson(-0), "-0.0")
  })

  it("typed arrays are arrays of their elements; 64-bit ones exact", () => {
    assert.strictEqual(stringifyJson(Uint8Array.of(1, 255)), "[1,255]")
    assert.strictEqual(stringifyJson(BigInt64Array.of(-1n, 2n ** 62n)), "[-1,4611686018427387904]")
    assert.strictEqual(stringifyJson(Tensor.toArray(Tensor.make("bool", [2], Uint8Array.of(1, 0)))), "[true,false]")
  })

  it("otherwise writes exactly what JSON.stringify writes, in one line and indented", () => {
    const noNegativeZero = (v: unknown): boolean =>
      !JSON.stringify(v, (_k, x: unknown) => (Object.is(x, -0) ? "\u0000" : x)).includes("\\u0000")
    fc.assert(
      fc.property(fc.jsonValue().filter(noNegativeZero), fc.integer({ min: 0, max: 4 }), (value, indent) => {
        assert.strictEqual(stringifyJson(value), JSON.stringify(value))
        assert.strictEqual(stringifyJson(value, indent), JSON.stringify(value, null, indent))
      })
    )
  })

  it("reads back as the value, -0 included", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        assert.deepStrictEqual(JSON.parse(stringifyJson(value)), value)
      })
    )
    assert.isTrue(Object.is(JSON.parse(stringifyJson({ x: -0 })).x, -0))
  })

  it("leaves out what JSON.stringify leaves out; honours toJSON; refuses a value that contains itself", () => {
    assert.strictEqual(stringifyJson({ a: undefined, b: () => 1, c: 1 }), "{\"c\":1}")
    assert.strictEqual(stringifyJson([undefined, () => 1]), "[null,null]")
    assert.strictEqual(stringifyJson(undefined), "null")
    assert.strictEqual(stringifyJson({ at: new Date(0) }), "{\"at\":\"1970-01-01T00:00:00.000Z\"}")
    assert.strictEqual(stringifyJson({ "quote\"d": "line\nbreak" }), JSON.stringify({ "quote\"d": "line\nbreak" }))
    const loop: Record<string, unknown> = {}
    loop["self"] = loop
    assert.throws(() => stringifyJson(loop), TypeError)
    // the same object twice (not a cycle) is fine
    const shared = { n: NaN }
    assert.strictEqual(stringifyJson([shared, shared]), "[{\"n\":\"NaN\"},{\"n\":\"NaN\"}]")
  })
})

describe("reviveNonFinite", () => {
  it("turns the three strings back into numbers and leaves every other value alone", () => {
    assert.deepStrictEqual(
      JSON.parse("{\"a\":\"NaN\",\"b\":[\"Infinity\",\"-Infinity\"],\"c\":\"nan\",\"d\":\"inf\",\"e\":-0.0,\"f\":null}", reviveNonFinite),
      { a: NaN, b: [Infinity, -Infinity], c: "nan", d: "inf", e: -0, f: null }
    )
  })
})
