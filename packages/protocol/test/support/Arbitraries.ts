// fast-check generators for random but consistent messages.
import * as fc from "fast-check"
import {
  type CameraFrame,
  Dtype,
  type Message,
  type Observation,
  type Proprio,
  type Tensor,
  type UserMap
} from "@chiral/protocol"

export const dtype: fc.Arbitrary<Dtype> = fc.constantFrom(...Dtype.all)

/** Small shapes, including rank 0 (one element) and zero-sized dimensions. */
export const shape: fc.Arbitrary<Array<number>> = fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 0, maxLength: 4 })

/** A tensor whose elements are arbitrary bytes (any NaN payload, any bool byte). */
export const tensorOf = (dtypes: fc.Arbitrary<Dtype>, shapes: fc.Arbitrary<ReadonlyArray<number>> = shape) =>
  fc.tuple(dtypes, shapes).chain(([d, s]) => {
    const n = s.reduce((a, b) => a * b, 1)
    return fc.uint8Array({ minLength: n * Dtype.itemSize(d), maxLength: n * Dtype.itemSize(d) }).map((bytes): Tensor => {
      const ctor = Dtype.arrayConstructor(d)
      const data = new ctor(n)
      new Uint8Array(data.buffer).set(bytes)
      return { dtype: d, shape: s, data }
    })
  })

export const tensor = tensorOf(dtype)

/** Any double, including -0, NaN and infinities. */
const double = fc.double()

const floats = (n: number) => fc.array(double, { minLength: n, maxLength: n }).map((a) => Float64Array.from(a))

/** msgpack-representable user values: what a Python server might put in info/extra/data. */
const userValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.maxSafeInteger(),
    fc.double({ noInteger: true }),
    fc.string({ unit: "grapheme", maxLength: 40 }),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie("value"), { maxKeys: 4 })
  )
})).value

export const userMap: fc.Arbitrary<UserMap> = fc.dictionary(fc.string({ maxLength: 12 }), userValue, { maxKeys: 5 })

const cameraName = fc.string({ minLength: 1, maxLength: 40, unit: "grapheme-ascii" })

export const camera = (name: string): fc.Arbitrary<CameraFrame> =>
  fc.record({
    timestamp: double,
    intrinsics: floats(9),
    extrinsics: floats(16),
    image: tensor,
    depth: fc.option(tensor, { nil: null })
  }).map((c) => ({ name, ...c }))

export const proprio = (name: string): fc.Arbitrary<Proprio> =>
  tensorOf(fc.constant("float32" as const), fc.tuple(fc.integer({ min: 0, max: 12 }))).map((data) => ({ name, data }))

export const observation: fc.Arbitrary<Observation> = fc.record({
  timestamp: double,
  cameraNames: fc.uniqueArray(cameraName, { maxLength: 4 }),
  proprioNames: fc.uniqueArray(fc.string({ maxLength: 20 }), { maxLength: 3 }),
  extra: userMap
}).chain(({ cameraNames, extra, proprioNames, timestamp }) =>
  fc.record({
    cameras: fc.tuple(...cameraNames.map(camera)),
    proprios: fc.tuple(...proprioNames.map(proprio))
  }).map(({ cameras, proprios }): Observation => ({ timestamp, cameras, proprios, extra }))
)

const obsTimestamps = fc.dictionary(cameraName, double, { maxKeys: 4 })

export const message: fc.Arbitrary<Message> = fc.oneof(
  fc.constantFrom<Message>({ type: "metadata" }, { type: "reset" }, { type: "obs_request" }),
  fc.record({
    type: fc.constantFrom("apply_action" as const, "action" as const),
    action: tensorOf(fc.constant("float32" as const)),
    obsTimestamps
  }),
  fc.record({ type: fc.constant("metadata_response" as const), data: userMap }),
  fc.record({ type: fc.constant("obs_response" as const), obs: observation }),
  fc.record({ type: fc.constant("reset_response" as const), obs: observation, info: userMap }),
  fc.record({
    type: fc.constant("step_response" as const),
    obs: observation,
    reward: double.map(Math.fround),
    terminated: fc.boolean(),
    truncated: fc.boolean(),
    info: userMap
  })
)
