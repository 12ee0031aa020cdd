import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { encodeFrame, encodeFrameParts, type Observation, Tensor } from "@chiral/protocol"
import { currentObservationTemplate } from "../src/FrameEncoder.js"
import * as ObservationTemplate from "../src/ObservationTemplate.js"
import * as Arb from "./support/Arbitraries.js"

const runs = Number(process.env.CHIRAL_PROPERTY_RUNS ?? 300)

const joined = (parts: ReadonlyArray<Uint8Array>): string => Buffer.concat(parts).toString("hex")

/** What the encoder writes with no template: `encodeFrame` never uses one. */
const full = (obs: Observation): string => Buffer.from(encodeFrame({ type: "obs_response", obs })).toString("hex")

const float64s = (n: number) => fc.float64Array({ minLength: n, maxLength: n })

/** `obs` at a later instant: every float of its header changed, tensors and layout kept. */
const later = (obs: Observation) =>
  fc.record({
    timestamp: fc.double(),
    cameras: fc.tuple(...obs.cameras.map(() => fc.tuple(fc.double(), float64s(9), float64s(16))))
  }).map(({ cameras, timestamp }): Observation => ({
    ...obs,
    timestamp,
    cameras: obs.cameras.map((c, i) => ({
      ...c,
      timestamp: cameras[i]![0],
      intrinsics: cameras[i]![1],
      extrinsics: cameras[i]![2]
    })),
    extra: {}
  }))

const observations = Arb.observation.map((obs): Observation => ({ ...obs, extra: {} }))
  .chain((obs) => fc.tuple(fc.constant(obs), later(obs)))

describe("obs_response headers from a template", () => {
  it("gives the bytes the encoder writes, for any later observation of the same layout", () => {
    fc.assert(
      fc.property(observations, ([first, next]) => {
        assert.strictEqual(joined(encodeFrameParts({ type: "obs_response", obs: first })), full(first))
        const template = currentObservationTemplate()
        assert.isDefined(template, "recorded from the first")
        const filled = ObservationTemplate.fill(template!, next)
        assert.isDefined(filled, "same layout")
        assert.strictEqual(joined(filled!), full(next))
        assert.strictEqual(joined(encodeFrameParts({ type: "obs_response", obs: next })), full(next))
      }),
      { numRuns: runs }
    )
  })

  it("is not used for an observation of another layout, or with anything in extra", () => {
    const tensor = (dtype: "uint8" | "float32", shape: ReadonlyArray<number>) => Tensor.zeros(dtype, shape)
    const base: Observation = {
      timestamp: 1,
      cameras: [{
        name: "wrist",
        timestamp: 0.5,
        intrinsics: new Float64Array(9),
        extrinsics: new Float64Array(16),
        image: tensor("uint8", [2, 3, 3]),
        depth: tensor("float32", [2, 3])
      }],
      proprios: [{ name: "joint_pos", data: tensor("float32", [7]) }],
      extra: {}
    }
    const camera = base.cameras[0]!
    const others: ReadonlyArray<[string, Observation]> = [
      ["another camera name", { ...base, cameras: [{ ...camera, name: "head" }] }],
      ["another image shape", { ...base, cameras: [{ ...camera, image: tensor("uint8", [3, 2, 3]) }] }],
      ["no depth", { ...base, cameras: [{ ...camera, depth: null }] }],
      ["a second camera", { ...base, cameras: [camera, { ...camera, name: "head" }] }],
      ["another proprio size", { ...base, proprios: [{ name: "joint_pos", data: tensor("float32", [6]) }] }],
      ["a float64 proprio (sent as float32)", {
        ...base,
        proprios: [{ name: "joint_pos", data: Tensor.zeros("float64", [7]) }]
      }],
      ["K as plain numbers", { ...base, cameras: [{ ...camera, intrinsics: [0, 0, 0, 0, 0, 0, 0, 0, 0] as never }] }],
      ["an inconsistent tensor", {
        ...base,
        cameras: [{ ...camera, image: { dtype: "uint8", shape: [2, 3, 3], data: new Float32Array(18) as never } }]
      }],
      ["something in extra", { ...base, extra: { success: true } }]
    ]
    // A float64 proprio is sent converted to float32: such a header is no template.
    encodeFrameParts({ type: "obs_response", obs: others[5]![1] })
    assert.isUndefined(currentObservationTemplate(), "float64 proprio")
    encodeFrameParts({ type: "obs_response", obs: base })
    const template = currentObservationTemplate()!
    assert.isDefined(ObservationTemplate.fill(template, { ...base, timestamp: 2 }), "the same layout")
    for (const [what, obs] of others) {
      assert.isUndefined(ObservationTemplate.fill(template, obs), what)
    }
    // Each of them still encodes as it would without a template (or fails as it would).
    for (const [what, obs] of others) {
      let expected: string
      try {
        expected = full(obs)
      } catch (e) {
        assert.throws(() => encodeFrameParts({ type: "obs_response", obs }), String((e as Error).message), what)
        continue
      }
      encodeFrameParts({ type: "obs_response", obs: base })
      assert.strictEqual(joined(encodeFrameParts({ type: "obs_response", obs })), expected, what)
    }
  })
})
