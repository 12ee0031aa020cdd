import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import {
  CameraFrame,
  decodeFrame,
  describeMessage,
  Dtype,
  encodeFrame,
  encodeFrameParts,
  FrameError,
  halfToNumber,
  type Message,
  numberToHalf,
  Observation,
  Proprio,
  stringifyDescription,
  Tensor,
  TensorError
} from "@chiral/protocol"
import { MsgpackWriter } from "../src/Msgpack.js"

const failure = (r: Result.Result<Message, FrameError>): FrameError => {
  if (Result.isSuccess(r)) return assert.fail("expected a FrameError")
  return r.failure
}

const success = (r: Result.Result<Message, FrameError>): Message => {
  if (Result.isFailure(r)) return assert.fail(r.failure.message)
  return r.success
}

/** A frame from a hand-written header value and payload. */
const frameOf = (header: unknown, payload: Uint8Array = new Uint8Array(0)) => {
  const w = new MsgpackWriter(64, 4)
  w.value(header)
  w.view.setUint32(0, w.pos - 4, true)
  return Buffer.concat([w.bytes(), payload])
}

const camera = (name: string, image: Tensor, depth: Tensor | null = null) =>
  CameraFrame.make({ name, timestamp: 1.5, image, depth, intrinsics: [600, 0, 320, 0, 600, 240, 0, 0, 1] })

const rgb = (h: number, w: number) => Tensor.make("uint8", [h, w, 3], Uint8Array.from({ length: h * w * 3 }, (_, i) => i % 256))
const depth = (h: number, w: number) => Tensor.make("float32", [h, w], Float32Array.from({ length: h * w }, (_, i) => i / 8))

describe("FrameError", () => {
  it("is a tagged, schema-backed error whose message is `field: reason`", () => {
    const e = new FrameError({ field: "cameras[0].image_size", reason: "100 bytes, but shape [4,5,3] × uint8 needs 60" })
    assert.strictEqual(e._tag, "FrameError")
    assert.strictEqual(e.message, "cameras[0].image_size: 100 bytes, but shape [4,5,3] × uint8 needs 60")
    assert.instanceOf(e, Error)
  })
})

describe("decodeFrame", () => {
  it("does not depend on key order", () => {
    const payload = Uint8Array.of(1, 2, 3, 4)
    const header = {
      proprios: [{ size: 4, offset: 0, dtype: "float32", name: "q" }],
      extra: { z: 1 },
      cameras: [],
      timestamp: 2,
      type: "obs_response",
      unknown_future_key: [1, 2]
    }
    const m = success(decodeFrame(frameOf(header, payload)))
    assert.deepStrictEqual(describeMessage(m, { tensorData: false }), {
      type: "obs_response",
      obs: { timestamp: 2, extra: { z: 1 }, cameras: [], proprios: { q: { dtype: "float32", shape: [1] } } }
    })
  })

  it("honours the limits it is given", () => {
    const frame = encodeFrame({ type: "metadata_response", data: { a: [[[[1]]]] } })
    assert.isTrue(Result.isSuccess(decodeFrame(frame)))
    assert.strictEqual(failure(decodeFrame(frame, { maxDepth: 3 })).reason, "nested deeper than 3 levels")
    assert.strictEqual(failure(decodeFrame(frame, { maxDepth: 3 })).field, "data.a[0]")
    assert.match(failure(decodeFrame(frame, { maxHeaderBytes: 10 })).reason, /more than the 10-byte header limit/)
    assert.match(failure(decodeFrame(frame, { maxFrameBytes: 10 })).reason, /more than the 10-byte limit/)
  })

  it("rejects buffers that together claim more bytes than the payload has", () => {
    const cam = (name: string) => ({
      name,
      intrinsics: [1, 0, 0, 0, 1, 0, 0, 0, 1],
      extrinsics: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
      image_shape: [4],
      image_dtype: "uint8",
      image_offset: 0,
      image_size: 4
    })
    const header = { type: "obs_response", timestamp: 0, cameras: [cam("a"), cam("b")], proprios: [], extra: {} }
    const e = failure(decodeFrame(frameOf(header, new Uint8Array(4))))
    assert.strictEqual(e.field, "cameras[1].image_size")
    assert.match(e.reason, /need 8 bytes, more than the 4-byte payload/)
  })

  it("needs all four depth keys, and accepts none", () => {
    const base = {
      name: "c",
      intrinsics: [1, 0, 0, 0, 1, 0, 0, 0, 1],
      extrinsics: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
      image_shape: [1],
      image_dtype: "uint8",
      image_offset: 0,
      image_size: 1
    }
    const frame = (c: object) => frameOf({ type: "obs_response", timestamp: 0, cameras: [c] }, new Uint8Array(8))
    const ok = success(decodeFrame(frame(base)))
    assert.strictEqual(ok.type === "obs_response" && ok.obs.cameras[0]!.depth, null)
    const e = failure(decodeFrame(frame({ ...base, depth_size: 4, depth_offset: 4 })))
    assert.strictEqual(e.field, "cameras[0].depth_shape")
    assert.match(e.reason, /missing, but depth_offset, depth_size are given/)
  })

  it("accepts C++ integral doubles (ints) in float fields and 64-bit ints", () => {
    const header = { type: "apply_action", shape: [0], dtype: "float32", obs_timestamps: { a: 2n ** 60n, b: 3 } }
    const m = success(decodeFrame(frameOf(header)))
    assert.deepStrictEqual(m.type === "apply_action" && m.obsTimestamps, { a: 2 ** 60, b: 3 })
  })

  it("turns non-string keys of top-level user maps into strings", () => {
    const header = { type: "metadata_response", data: new Map<unknown, unknown>([[1, "one"], ["n", new Map([[2, 3]])]]) }
    const m = success(decodeFrame(frameOf(header)))
    assert.deepStrictEqual(m.type === "metadata_response" && m.data, { "1": "one", n: new Map([[2, 3]]) })
  })

  it("views aligned payload bytes and copies misaligned ones exactly once", () => {
    const obs = Observation.make({ timestamp: 1, cameras: [camera("c", rgb(2, 3), depth(2, 3))] })
    const frame = encodeFrame({ type: "obs_response", obs })
    for (let shift = 0; shift < 4; shift++) {
      const host = new Uint8Array(frame.byteLength + shift)
      host.set(frame, shift)
      const m = success(decodeFrame(host.subarray(shift)))
      const cam = m.type === "obs_response" ? m.obs.cameras[0]! : assert.fail()
      assert.strictEqual(cam.image.data.buffer, host.buffer, "uint8 is always a view")
      const headerLen = new DataView(frame.buffer).getUint32(0, true)
      const aligned = (shift + 4 + headerLen + 18) % 4 === 0 // depth follows the 18 image bytes
      assert.strictEqual(cam.depth!.data.buffer === host.buffer, aligned)
      assert.deepStrictEqual(Array.from(cam.depth!.data as Float32Array), Array.from(depth(2, 3).data as Float32Array))
    }
  })

  it("works on a Node Buffer slice of a pooled allocation", () => {
    const frame = encodeFrame({ type: "apply_action", action: Tensor.make("float32", [3], Float32Array.of(1, 2, 3)), obsTimestamps: {} })
    const pooled = Buffer.from(frame) // small Buffers share a pool
    const m = success(decodeFrame(pooled))
    assert.deepStrictEqual(m.type === "apply_action" && Array.from(m.action.data as Float32Array), [1, 2, 3])
  })
})

describe("encodeFrame", () => {
  it("casts actions and proprios to float32 like the references", () => {
    const action = Tensor.make("float64", [2], Float64Array.of(1.5, -2.25))
    const bytes = encodeFrame({ type: "apply_action", action, obsTimestamps: {} })
    const m = success(decodeFrame(bytes))
    assert.deepStrictEqual(describeMessage(m), {
      type: "apply_action",
      action: { dtype: "float32", shape: [2], data: [1.5, -2.25] },
      obs_timestamps: {}
    })
    const obs = Observation.make({ timestamp: 0, proprios: [{ name: "q", data: Tensor.make("int64", [2], BigInt64Array.of(1n, -2n)) }] })
    const o = success(decodeFrame(encodeFrame({ type: "obs_response", obs })))
    assert.deepStrictEqual(o.type === "obs_response" && Tensor.toArray(o.obs.proprios[0]!.data), [1, -2])
    assert.strictEqual(o.type === "obs_response" && o.obs.proprios[0]!.data.dtype, "float32")
  })

  it("refuses inconsistent messages with a FrameError naming the field", () => {
    const bad = { dtype: "float32", shape: [2, 2], data: new Float32Array(3) } as const
    const obs = Observation.make({ timestamp: 0, cameras: [camera("c", rgb(1, 1), bad)] })
    assert.throws(() => encodeFrame({ type: "obs_response", obs }), FrameError, "cameras[0].depth: shape [2,2] needs 4 elements, data has 3")
    const twice = Observation.make({ timestamp: 0, cameras: [camera("c", rgb(1, 1)), camera("c", rgb(1, 1))] })
    assert.throws(() => encodeFrame({ type: "obs_response", obs: twice }), FrameError, "cameras[1].name")
    const shortK = { ...camera("c", rgb(1, 1)), intrinsics: new Float64Array(4) }
    assert.throws(() => encodeFrame({ type: "obs_response", obs: Observation.make({ timestamp: 0, cameras: [shortK] }) }), FrameError, "cameras[0].intrinsics")
    assert.throws(() => encodeFrame({ type: "metadata_response", data: { f: () => 1 } }), FrameError, "data: cannot encode a function")
  })

  it("parts carry the tensors' own memory, the first part holds prefix and header", () => {
    const image = rgb(4, 5)
    const d = depth(4, 5)
    const parts = encodeFrameParts({ type: "obs_response", obs: Observation.make({ timestamp: 0, cameras: [camera("c", image, d)] }) })
    assert.strictEqual(parts.length, 3)
    assert.strictEqual(parts[1]!.buffer, image.data.buffer)
    assert.strictEqual(parts[2]!.buffer, d.data.buffer)
    const headerLen = new DataView(parts[0]!.buffer, parts[0]!.byteOffset).getUint32(0, true)
    assert.strictEqual(parts[0]!.byteLength, 4 + headerLen)
  })

  it("writes the cpp dialect in C++ key order with float32 reward", () => {
    const obs = Observation.make({ timestamp: 3, proprios: [Proprio.fromNumbers("q", [1])] })
    const bytes = encodeFrame({ type: "step_response", obs, reward: 0.5, terminated: true, truncated: false, info: {} })
    const text = Buffer.from(bytes).toString("latin1")
    const order = ["type", "timestamp", "extra", "cameras", "proprios", "reward", "terminated", "truncated", "info"].map((k) => text.indexOf(k))
    assert.deepStrictEqual([...order].sort((a, b) => a - b), order)
    assert.include(Buffer.from(bytes).toString("hex"), Buffer.from("reward").toString("hex") + "ca3f000000")
  })
})

describe("Tensor", () => {
  it("make checks dtype, shape and data agree", () => {
    assert.throws(() => Tensor.make("float32", [2], new Float64Array(2)), TensorError, "dtype float32 needs a Float32Array, got Float64Array")
    assert.throws(() => Tensor.make("uint8", [2, 2], new Uint8Array(3)), TensorError, "needs 4 elements")
    assert.throws(() => Tensor.make("uint8", [-1], new Uint8Array(0)), TensorError, "not a non-negative integer")
    assert.deepStrictEqual(Tensor.make("float16", [1], Uint16Array.of(0x3c00)).shape, [1])
    assert.strictEqual(Tensor.zeros("int64", [2, 3]).data.length, 6)
    assert.strictEqual(Tensor.byteLength(Tensor.zeros("float64", [2, 3])), 48)
  })

  it("fromBytes views aligned bytes and copies misaligned ones", () => {
    const bytes = new Uint8Array(12)
    new DataView(bytes.buffer).setFloat32(1, 1.5, true)
    new DataView(bytes.buffer).setFloat32(8, 2.5, true)
    const copied = Tensor.fromBytes("float32", [1], bytes.subarray(1, 5))
    assert.notStrictEqual(copied.data.buffer, bytes.buffer)
    assert.deepStrictEqual(Array.from(copied.data as Float32Array), [1.5])
    const viewed = Tensor.fromBytes("float32", [1], bytes.subarray(8, 12))
    assert.strictEqual(viewed.data.buffer, bytes.buffer)
    assert.deepStrictEqual(Array.from(viewed.data as Float32Array), [2.5])
  })

  it("the schema validates tensors", () => {
    const is = Schema.is(Tensor.schema)
    assert.isTrue(is(rgb(2, 2)))
    assert.isFalse(is({ dtype: "uint8", shape: [5], data: new Uint8Array(4) }))
    assert.isFalse(is({ dtype: "complex64", shape: [0], data: new Uint8Array(0) }))
  })

  it("float16 bits convert both ways exactly (every one of the 65536 halves)", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = halfToNumber(bits)
      if (Number.isNaN(v)) continue
      assert.strictEqual(numberToHalf(v), bits, `0x${bits.toString(16)}`)
    }
    assert.strictEqual(numberToHalf(1 + 2 ** -11), 0x3c00, "ties go to even")
    assert.strictEqual(numberToHalf(65520), 0x7c00, "overflow is infinity")
    assert.strictEqual(Dtype.itemSize("float16"), 2)
  })
})

describe("describeMessage", () => {
  it("omits tensor data on request and prints bigints exactly", () => {
    const t = Tensor.make("uint64", [2], BigUint64Array.of(1n, 2n ** 64n - 1n))
    const m: Message = { type: "action", action: t, obsTimestamps: { c: 1.5 } }
    assert.deepStrictEqual(describeMessage(m, { tensorData: false }), {
      type: "action",
      action: { dtype: "uint64", shape: [2] },
      obs_timestamps: { c: 1.5 }
    })
    assert.strictEqual(
      stringifyDescription(describeMessage(m)),
      `{"type":"action","action":{"dtype":"uint64","shape":[2],"data":[1,18446744073709551615]},"obs_timestamps":{"c":1.5}}`
    )
  })

  it("describes bool tensors as booleans and float16 as numbers", () => {
    const obs = Observation.make({
      timestamp: 0,
      cameras: [camera("c", Tensor.make("bool", [2], Uint8Array.of(0, 1)), Tensor.make("float16", [1], Uint16Array.of(0x3e00)))]
    })
    const d = describeMessage({ type: "obs_response", obs }) as any
    assert.deepStrictEqual(d.obs.cameras[0].image.data, [false, true])
    assert.deepStrictEqual(d.obs.cameras[0].depth.data, [1.5])
  })
})

describe("requests without a body", () => {
  it("decode from the references' bytes as by the general path, limits included", () => {
    for (const type of ["obs_request", "metadata", "reset"] as const) {
      const frame = encodeFrame({ type })
      assert.deepStrictEqual(Result.getOrThrow(decodeFrame(frame)), { type })
      // The same map with one byte of payload after it takes the general path.
      const longer = new Uint8Array(frame.byteLength + 1)
      longer.set(frame)
      assert.deepStrictEqual(Result.getOrThrow(decodeFrame(longer)), { type })
      // Limits hold for them as for any frame: as for the longer one, which the general path reads.
      const limitsCases = [{ maxDepth: 0 }, { maxDepth: 1 }, { maxHeaderBytes: 4 }, { maxFrameBytes: 8 }]
      for (const limits of limitsCases) {
        const bare = decodeFrame(frame, limits)
        const general = decodeFrame(longer, limits)
        assert.strictEqual(Result.isSuccess(bare), Result.isSuccess(general), `${type} ${JSON.stringify(limits)}`)
        if (Result.isFailure(bare) && Result.isFailure(general)) {
          assert.strictEqual(bare.failure.field, general.failure.field, `${type} ${JSON.stringify(limits)}`)
        }
      }
      assert.isTrue(Result.isFailure(decodeFrame(frame, { maxDepth: 0 })))
    }
  })
})

describe("encoding malformed observations", () => {
  const camera = {
    name: "wrist",
    timestamp: 0,
    intrinsics: new Float64Array(9),
    extrinsics: new Float64Array(16),
    image: Tensor.zeros("uint8", [2, 2, 3]),
    depth: null
  }
  const obs = (over: Partial<Observation>): Message => ({
    type: "obs_response",
    obs: { timestamp: 0, cameras: [camera], proprios: [], extra: {}, ...over }
  })
  const error = (m: Message): string => {
    try {
      encodeFrameParts(m)
    } catch (e) {
      return (e as Error).message
    }
    return "encoded"
  }

  it("a hole in cameras or proprios is named, never written as a shorter array", () => {
    const cameras = [camera, camera]
    delete (cameras as Array<unknown>)[0]
    assert.include(error(obs({ cameras })), "cameras[0]: missing")
    assert.include(error(obs({ proprios: [undefined as never] })), "proprios[0]: missing")
    // After a template of this layout was recorded too.
    encodeFrameParts(obs({ cameras: [camera, { ...camera, name: "head" }] }))
    assert.include(error(obs({ cameras })), "cameras[0]: missing")
  })

  it("K given as a plain array is named as such", () => {
    assert.include(
      error(obs({ cameras: [{ ...camera, intrinsics: [1, 0, 0, 0, 1, 0, 0, 0, 1] as never }] })),
      "cameras[0].intrinsics: expected a Float64Array of 9 values, got an Array"
    )
    assert.include(
      error(obs({ cameras: [{ ...camera, extrinsics: new Float64Array(12) }] })),
      "expected 16 float64 values, got 12"
    )
  })
})
