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
      ["image data of another size", {
        ...base,
        cameras: [{ ...camera, image: { dtype: "uint8", shape: [2, 3, 3], data: new Float32Array(18) as never } }]
      }],
      // Same sizes, wrong kinds of array: only the tensors' own check tells these apart.
      ["uint8 image data in an Int8Array", {
        ...base,
        cameras: [{ ...camera, image: { dtype: "uint8", shape: [2, 3, 3], data: new Int8Array(18) as never } }]
      }],
      ["float32 depth data in an Int32Array", {
        ...base,
        cameras: [{ ...camera, depth: { dtype: "float32", shape: [2, 3], data: new Int32Array(6) as never } }]
      }],
      ["something in extra", { ...base, extra: { success: true } }]
    ]
    // A float64 proprio is sent converted to float32: such a header is no template.
    encodeFrameParts({ type: "obs_response", obs: others.find(([what]) => what.startsWith("a float64 proprio"))![1] })
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

  it("gives each reply a header of its own, and leaves other messages and the C++ dialect alone", () => {
    const tensor = (dtype: "uint8" | "float32", shape: ReadonlyArray<number>) => Tensor.zeros(dtype, shape)
    // Tensors that are views into larger buffers, at an offset.
    const bytes = new Uint8Array(64).map((_, i) => i)
    const obs: Observation = {
      timestamp: 1,
      cameras: [{
        name: "wrist",
        timestamp: 0.5,
        intrinsics: new Float64Array(9).fill(2),
        extrinsics: new Float64Array(16).fill(3),
        image: { dtype: "uint8", shape: [2, 3, 3], data: bytes.subarray(5, 23) },
        depth: { dtype: "float32", shape: [2, 3], data: new Float32Array(bytes.buffer, 24, 6) }
      }],
      proprios: [{ name: "joint_pos", data: tensor("float32", [7]) }],
      extra: {}
    }
    encodeFrameParts({ type: "obs_response", obs })
    const template = currentObservationTemplate()!
    const first = ObservationTemplate.fill(template, { ...obs, timestamp: 2 })!
    const second = ObservationTemplate.fill(template, { ...obs, timestamp: 3 })!
    assert.notStrictEqual(first[0]!.buffer, template.header.buffer)
    assert.notStrictEqual(first[0]!.buffer, second[0]!.buffer)
    assert.strictEqual(joined(first), full({ ...obs, timestamp: 2 }), "a later fill leaves an earlier reply as it was")
    for (const m of [
      { type: "reset_response" as const, obs: { ...obs, timestamp: 4 }, info: {} },
      {
        type: "step_response" as const,
        obs: { ...obs, timestamp: 5 },
        reward: 1,
        terminated: false,
        truncated: false,
        info: {}
      }
    ]) {
      assert.strictEqual(joined(encodeFrameParts(m)), Buffer.from(encodeFrame(m)).toString("hex"), m.type)
    }
    const cpp = { type: "obs_response" as const, obs: { ...obs, timestamp: 6 } }
    assert.strictEqual(
      joined(encodeFrameParts(cpp, { dialect: "cpp" })),
      Buffer.from(encodeFrame(cpp, { dialect: "cpp" })).toString("hex")
    )
  })
})
