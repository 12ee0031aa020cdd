// The worker's own apply_action writer must give exactly the codec's bytes.
import { encodeFrame } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { encodeApplyAction } from "../src/ActionFrame.js"

const codec = (shape: ReadonlyArray<number>, data: Float32Array, obsTimestamps: Record<string, number>) =>
  encodeFrame({ type: "apply_action", action: { dtype: "float32", shape, data }, obsTimestamps })

describe("ActionFrame.encodeApplyAction", () => {
  it("matches encodeFrame on the usual actions", () => {
    const data = Float32Array.of(0.1, -2, 3.5, 0, 1e-7, 42, -0)
    for (const [shape, timestamps] of [
      [[7], {}],
      [[1, 7], { cam_0: 1234.5, cam_1: 0 }],
      [[7], { ["c".repeat(40)]: 1.25, "wrïst": -3 }]
    ] as const) {
      assert.deepStrictEqual(
        Array.from(encodeApplyAction(shape, data, timestamps)),
        Array.from(codec(shape, data, timestamps))
      )
    }
  })

  it("matches encodeFrame for any shape, values and timestamps", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 70_000 }), { minLength: 0, maxLength: 3 }).filter((s) =>
          s.reduce((a, b) => a * b, 1) <= 300
        ),
        fc.dictionary(fc.string({ maxLength: 300 }), fc.double(), { maxKeys: 20 }).filter((d) => !("__proto__" in d)),
        (shape, timestamps) => {
          const n = shape.reduce((a, b) => a * b, 1)
          const data = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3)
          assert.deepStrictEqual(
            Array.from(encodeApplyAction(shape, data, timestamps)),
            Array.from(codec(shape, data, timestamps))
          )
        }
      ),
      { numRuns: 300 }
    )
  })
})
