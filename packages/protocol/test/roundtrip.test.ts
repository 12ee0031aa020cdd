import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import { decodeFrame, type Dialect, encodeFrame, encodeFrameParts, frameAlignment, type Message, Tensor } from "@chiral/protocol"
import * as Arb from "./support/Arbitraries.js"

const runs = Number(process.env.CHIRAL_PROPERTY_RUNS ?? 300)

const decodeOk = (bytes: Uint8Array): Message => {
  const r = decodeFrame(bytes)
  if (Result.isFailure(r)) throw new Error(r.failure.message)
  return r.success
}

/** Tensors compared by dtype, shape and exact bytes (NaN payloads included). */
const normalize = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(normalize)
  if (v instanceof Float64Array) return Array.from(v)
  if (v !== null && typeof v === "object" && "dtype" in v && "data" in v && "shape" in v) {
    const t = v as Tensor
    return { dtype: t.dtype, shape: [...t.shape], bytes: Buffer.from(Tensor.bytes(t)).toString("hex") }
  }
  if (v instanceof Uint8Array || v instanceof Map) return v
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]))
  }
  return v
}

/** Places the frame at `shift` bytes into a fresh buffer, so offsets land misaligned. */
const shifted = (frame: Uint8Array, shift: number) => {
  const buffer = new Uint8Array(frame.byteLength + shift)
  buffer.set(frame, shift)
  return buffer.subarray(shift)
}

const tensors = (m: Message): Array<Tensor> => {
  if (m.type === "apply_action" || m.type === "action") return [m.action]
  const obs = m.type === "obs_response" || m.type === "reset_response" || m.type === "step_response" ? m.obs : undefined
  if (obs === undefined) return []
  return [
    ...obs.cameras.flatMap((c) => c.depth === null ? [c.image] : [c.image, c.depth]),
    ...obs.proprios.map((p) => p.data)
  ]
}

describe("round trips", () => {
  it("python dialect: decode(encode(m)) equals m, and re-encoding gives the same bytes", () => {
    fc.assert(
      fc.property(Arb.message, fc.integer({ min: 0, max: 7 }), (m, shift) => {
        const bytes = encodeFrame(m, { dialect: "python" })
        const decoded = decodeOk(shifted(bytes, shift))
        assert.deepStrictEqual(normalize(decoded), normalize(m))
        assert.deepStrictEqual(encodeFrame(decoded, { dialect: "python" }), bytes)
      }),
      { numRuns: runs }
    )
  })

  it("cpp dialect: the same values come back (integral doubles travel as ints)", () => {
    const zeroSign = (v: unknown): unknown => Object.is(v, -0) ? 0 : Array.isArray(v) ? v.map(zeroSign) : v
    fc.assert(
      fc.property(Arb.message, (m) => {
        const dialect: Dialect = "cpp"
        const bytes = encodeFrame(m, { dialect })
        const decoded = decodeOk(bytes)
        // msgpack-c writes -0.0 as the int 0, so the sign of zero is the one thing lost.
        const strip = (x: unknown) => JSON.parse(JSON.stringify(normalize(x), (_k, v) => typeof v === "number" ? String(zeroSign(v)) : v))
        assert.deepStrictEqual(strip(decoded), strip(m))
        assert.deepStrictEqual(encodeFrame(decoded, { dialect }), bytes)
      }),
      { numRuns: Math.ceil(runs / 3) }
    )
  })

  it("encodeFrameParts concatenates to encodeFrame and shares the tensors' memory", () => {
    fc.assert(
      fc.property(Arb.message, (m) => {
        const parts = encodeFrameParts(m)
        assert.deepStrictEqual(Buffer.concat(parts), Buffer.from(encodeFrame(m)))
        // Every non-empty float32 tensor's bytes appear as a part over its own buffer.
        const payloadBuffers = new Set(parts.slice(1).map((p) => p.buffer))
        for (const t of tensors(m)) {
          if (t.data.byteLength > 0 && (t.dtype === "float32" || !(m.type === "apply_action" || m.type === "action"))) {
            assert.isTrue(payloadBuffers.has(t.data.buffer))
          }
        }
      }),
      { numRuns: Math.ceil(runs / 3) }
    )
  })

  it("decoded tensors are views into the frame when aligned, and copies otherwise", () => {
    fc.assert(
      fc.property(Arb.observation, fc.integer({ min: 0, max: 7 }), (obs, shift) => {
        const frame = shifted(encodeFrame({ type: "obs_response", obs }), shift)
        const decoded = decodeOk(frame)
        for (const t of tensors(decoded)) {
          const item = Tensor.itemSize(t.dtype)
          const isView = t.data.buffer === frame.buffer
          if (t.data.byteLength === 0) continue
          if (item === 1) assert.isTrue(isView, "byte tensors are always views")
          else if (isView) assert.strictEqual(t.data.byteOffset % item, 0)
          else assert.strictEqual(t.data.byteOffset, 0, "a copy owns a fresh buffer")
        }
      }),
      { numRuns: Math.ceil(runs / 3) }
    )
  })

  it("frameAlignment: a frame placed there has its payload (at 4 + header_len) 8-byte aligned", () => {
    fc.assert(
      fc.property(Arb.observation, fc.integer({ min: 0, max: 7 }), (obs, shift) => {
        const bytes = encodeFrame({ type: "obs_response", obs })
        const frame = shifted(bytes, shift)
        const at = frameAlignment(frame.subarray(0, 4))
        const headerLen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true)
        assert.strictEqual((at + 4 + headerLen) % 8, 0)
        assert.isTrue(at >= 0 && at < 8)
      }),
      { numRuns: Math.ceil(runs / 3) }
    )
    assert.strictEqual(frameAlignment(new Uint8Array(3)), 0)
  })

  it("a random message validates against Message.schema; a tampered one does not", async () => {
    const { Schema } = await import("effect")
    const { Message } = await import("@chiral/protocol")
    const is = Schema.is(Message.schema)
    fc.assert(
      fc.property(Arb.message, (m) => {
        assert.isTrue(is(m))
        if (m.type === "obs_response" && m.obs.cameras.length > 0) {
          const c = m.obs.cameras[0]!
          const bad = { ...m, obs: { ...m.obs, cameras: [{ ...c, intrinsics: new Float64Array(4) }] } }
          assert.isFalse(is(bad))
        }
      }),
      { numRuns: Math.ceil(runs / 3) }
    )
  })
})
