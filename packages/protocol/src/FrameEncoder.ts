import { uninitialized } from "./Allocate.js"
import type { CameraFrame } from "./CameraFrame.js"
import { halfToNumber } from "./Dtype.js"
import { FrameError } from "./FrameError.js"
import type { Message, ObsTimestamps, UserMap } from "./Message.js"
import { MsgpackWriter } from "./Msgpack.js"
import * as ObservationTemplate from "./ObservationTemplate.js"
import type { Observation } from "./Observation.js"
import { Tensor } from "./Tensor.js"

/**
 * The encode path: writes the header field by field in the reference's key
 * order and number forms, and collects the tensors' bytes as views.
 */

export type Dialect = "python" | "cpp"

const fail = (field: string, reason: string): never => {
  throw new FrameError({ field, reason })
}

const checkTensor = (t: Tensor, field: string): void => {
  const p = Tensor.problem(t)
  if (p !== undefined) fail(field, p)
}

/** An array's entry, or a FrameError naming it when it is a hole (or null). */
const present = <A>(entry: A | null | undefined, field: string): A => {
  if (entry === undefined || entry === null) return fail(field, "missing")
  return entry
}

/** The references send float32 actions and proprios whatever the caller had (Python casts). */
const asFloat32 = (t: Tensor): Tensor => {
  if (t.dtype === "float32") return t
  const out = new Float32Array(t.data.length)
  const data = t.data
  if (t.dtype === "float16") for (let i = 0; i < out.length; i++) out[i] = halfToNumber(data[i] as number)
  else for (let i = 0; i < out.length; i++) out[i] = Number(data[i])
  return { dtype: "float32", shape: t.shape, data: out }
}

class Encoder {
  readonly w: MsgpackWriter
  readonly dialect: Dialect
  readonly payload: Array<Uint8Array> = []
  offset = 0
  /** Where each float64 of the header starts, when asked for (see `ObservationTemplate`). */
  readonly doubles: Array<number> | undefined

  constructor(dialect: Dialect, w: MsgpackWriter, recordDoubles = false) {
    this.dialect = dialect
    this.w = w
    this.doubles = recordDoubles ? [] : undefined
  }

  /** A C++ double or a Python float. */
  double(v: number): void {
    if (this.dialect === "python") {
      this.doubles?.push(this.w.pos)
      this.w.float64(v)
    } else this.w.compactDouble(v)
  }

  key(k: string): void {
    this.w.str(k)
  }

  append(t: Tensor): number {
    const at = this.offset
    if (t.data.byteLength > 0) this.payload.push(Tensor.bytes(t))
    this.offset += t.data.byteLength
    return at
  }

  shape(shape: ReadonlyArray<number>): void {
    this.w.arrayHeader(shape.length)
    for (const d of shape) this.w.int(d)
  }

  buffer(prefix: "image" | "depth", t: Tensor): void {
    const at = this.append(t)
    this.key(`${prefix}_shape`)
    this.shape(t.shape)
    this.key(`${prefix}_dtype`)
    this.w.str(t.dtype)
    this.key(`${prefix}_offset`)
    this.w.int(at)
    this.key(`${prefix}_size`)
    this.w.int(t.data.byteLength)
  }

  matrix(values: Float64Array, n: number, field: string): void {
    if (!(values instanceof Float64Array)) {
      const given: unknown = values
      const what = Array.isArray(given)
        ? "an Array"
        : ArrayBuffer.isView(given)
        ? `a ${given.constructor.name}`
        : given === null
        ? "null"
        : typeof given
      fail(field, `expected a Float64Array of ${n} values, got ${what}`)
    }
    if (values.length !== n) fail(field, `expected ${n} float64 values, got ${values.length}`)
    this.w.arrayHeader(n)
    for (let i = 0; i < n; i++) this.double(values[i]!)
  }

  camera(c: CameraFrame, path: string): void {
    checkTensor(c.image, `${path}.image`)
    if (c.depth !== null) checkTensor(c.depth, `${path}.depth`)
    const w = this.w
    w.mapHeader(c.depth === null ? 8 : 12)
    this.key("name")
    w.str(c.name)
    this.key("timestamp")
    this.double(c.timestamp)
    this.key("intrinsics")
    this.matrix(c.intrinsics, 9, `${path}.intrinsics`)
    this.key("extrinsics")
    this.matrix(c.extrinsics, 16, `${path}.extrinsics`)
    this.buffer("image", c.image)
    if (c.depth !== null) this.buffer("depth", c.depth)
  }

  cameras(obs: Observation): void {
    const names = new Set<string>()
    this.w.arrayHeader(obs.cameras.length)
    // Index loops, not forEach: forEach skips the holes of a sparse array,
    // which would leave the array header promising more entries than follow.
    for (let i = 0; i < obs.cameras.length; i++) {
      const c = present(obs.cameras[i], `cameras[${i}]`)
      if (names.has(c.name)) fail(`cameras[${i}].name`, `${JSON.stringify(c.name)} names two cameras`)
      names.add(c.name)
      this.camera(c, `cameras[${i}]`)
    }
  }

  proprios(obs: Observation): void {
    const names = new Set<string>()
    this.w.arrayHeader(obs.proprios.length)
    for (let i = 0; i < obs.proprios.length; i++) {
      const p = present(obs.proprios[i], `proprios[${i}]`)
      if (names.has(p.name)) fail(`proprios[${i}].name`, `${JSON.stringify(p.name)} names two proprios`)
      names.add(p.name)
      checkTensor(p.data, `proprios[${i}].data`)
      const data = asFloat32(p.data)
      const at = this.append(data)
      const w = this.w
      w.mapHeader(4)
      this.key("name")
      w.str(p.name)
      this.key("dtype")
      w.str("float32")
      this.key("offset")
      w.int(at)
      this.key("size")
      w.int(data.data.byteLength)
    }
  }

  userMap(m: UserMap, field: string): void {
    try {
      this.w.value(m)
    } catch (e) {
      fail(field, e instanceof Error ? e.message : String(e))
    }
  }

  /** type, timestamp, cameras, proprios, extra (Python) or type, timestamp, extra, cameras, proprios (C++). */
  observation(type: string, obs: Observation, more: number): void {
    const w = this.w
    w.mapHeader(5 + more)
    this.key("type")
    w.str(type)
    this.key("timestamp")
    this.double(obs.timestamp)
    if (this.dialect === "cpp") {
      this.key("extra")
      this.userMap(obs.extra, "extra")
    }
    this.key("cameras")
    this.cameras(obs)
    this.key("proprios")
    this.proprios(obs)
    if (this.dialect === "python") {
      this.key("extra")
      this.userMap(obs.extra, "extra")
    }
  }

  action(type: string, action: Tensor, obsTimestamps: ObsTimestamps): void {
    checkTensor(action, "action")
    const data = asFloat32(action)
    this.append(data)
    const w = this.w
    w.mapHeader(4)
    this.key("type")
    w.str(type)
    this.key("shape")
    this.shape(data.shape)
    this.key("dtype")
    w.str("float32")
    this.key("obs_timestamps")
    const keys = Object.keys(obsTimestamps)
    w.mapHeader(keys.length)
    for (const k of keys) {
      const v = obsTimestamps[k]
      if (typeof v !== "number") fail(`obs_timestamps.${k}`, `expected a number, got ${typeof v}`)
      w.str(k)
      this.double(v!)
    }
  }

  message(m: Message): void {
    const w = this.w
    switch (m.type) {
      case "metadata":
      case "reset":
      case "obs_request":
        w.mapHeader(1)
        this.key("type")
        w.str(m.type)
        return
      case "apply_action":
      case "action":
        return this.action(m.type, m.action, m.obsTimestamps)
      case "metadata_response":
        w.mapHeader(2)
        this.key("type")
        w.str(m.type)
        this.key("data")
        return this.userMap(m.data, "data")
      case "obs_response":
        return this.observation(m.type, m.obs, 0)
      case "reset_response":
        this.observation(m.type, m.obs, 1)
        this.key("info")
        return this.userMap(m.info, "info")
      case "step_response":
        this.observation(m.type, m.obs, 4)
        this.key("reward")
        if (this.dialect === "cpp") w.compactFloat(m.reward)
        else w.float64(m.reward)
        this.key("terminated")
        w.bool(m.terminated)
        this.key("truncated")
        w.bool(m.truncated)
        this.key("info")
        return this.userMap(m.info, "info")
      default:
        return fail("type", `${JSON.stringify((m as { type: unknown }).type)} names no message of the protocol`)
    }
  }
}

/**
 * Headers are written into one reused scratch writer and then copied out at
 * their exact size: cheaper than a fresh, oversized buffer per frame. A nested
 * encode (a user value's getter calling encodeFrame) gets its own writer.
 */
let scratch: MsgpackWriter | undefined = new MsgpackWriter(16 * 1024)
const scratchLimit = 1024 * 1024

const defaultDialect = (m: Message): Dialect => m.type === "action" || m.type === "step_response" ? "cpp" : "python"

/** Writes the header (prefix included) and collects the payload views; `finish` gets both. */
const encodeWith = <A>(
  m: Message,
  dialect: Dialect | undefined,
  finish: (header: Uint8Array, payload: ReadonlyArray<Uint8Array>, payloadBytes: number, doubles?: ReadonlyArray<number>) => A,
  recordDoubles = false
): A => {
  const w = scratch ?? new MsgpackWriter(1024)
  scratch = undefined
  try {
    // Bytes 0..3 are the length prefix, filled in at the end.
    w.pos = 4
    const encoder = new Encoder(dialect ?? defaultDialect(m), w, recordDoubles)
    encoder.message(m)
    w.view.setUint32(0, w.pos - 4, true)
    return finish(w.bytes(), encoder.payload, encoder.offset, encoder.doubles)
  } finally {
    if (w.buf.byteLength <= scratchLimit) scratch = w
  }
}

/**
 * The last obs_response header encoded in the Python dialect with nothing in
 * `extra`, as a template for the next one with the same layout: one entry,
 * as a server sends one robot's observations over and over.
 */
let observationTemplate: ObservationTemplate.ObservationTemplate | undefined

/** The template the next obs_response is filled from, if any (for tests). */
export const currentObservationTemplate = (): ObservationTemplate.ObservationTemplate | undefined => observationTemplate

/**
 * [prefix + header, ...payload views]. An obs_response (Python dialect,
 * nothing in `extra`) is filled in from the template of the previous one when
 * the layout is the same (see `ObservationTemplate`), else encoded in full
 * and kept as the template: a process that alternates two layouts pays for
 * recording one each time.
 */
export const encodeParts = (m: Message, dialect: Dialect | undefined): Array<Uint8Array> => {
  if (m.type !== "obs_response" || (dialect ?? "python") !== "python" || !ObservationTemplate.fits(m.obs)) {
    return encodeWith(m, dialect, (header, payload) => [header.slice(), ...payload])
  }
  const filled = observationTemplate === undefined ? undefined : ObservationTemplate.fill(observationTemplate, m.obs)
  if (filled !== undefined) return filled
  return encodeWith(m, dialect, (header, payload, _, doubles) => {
    observationTemplate = ObservationTemplate.record(header, doubles!, m.obs)
    return [header.slice(), ...payload]
  }, true)
}

/** One contiguous frame: the header and every payload part copied once. */
export const encodeContiguous = (m: Message, dialect: Dialect | undefined): Uint8Array =>
  encodeWith(m, dialect, (header, payload, payloadBytes) => {
    // Every byte is overwritten below, so the buffer need not be zeroed.
    const out = new Uint8Array(uninitialized(header.byteLength + payloadBytes))
    out.set(header)
    let at = header.byteLength
    for (const p of payload) {
      out.set(p, at)
      at += p.byteLength
    }
    return out
  })
