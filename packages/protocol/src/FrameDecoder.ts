import { Dtype } from "./Dtype.js"
import { FrameError } from "./FrameError.js"
import type { CameraFrame } from "./CameraFrame.js"
import type { Message, ObsTimestamps, UserMap } from "./Message.js"
import { formatPath, joinKey, MsgpackIssue, MsgpackReader } from "./Msgpack.js"
import type { Observation } from "./Observation.js"
import type { Proprio } from "./Proprio.js"
import { Tensor, type TensorData } from "./Tensor.js"

/**
 * The hand-written decode path. Everything is checked against the frame before
 * a payload byte is read; failures are thrown as FrameError and turned into a
 * Result by `decodeFrame` (Frame.ts).
 */

export interface Limits {
  readonly maxHeaderBytes: number
  readonly maxDepth: number
  readonly maxFrameBytes: number
}

type Header = Record<string, unknown>

const fail = (field: string, reason: string): never => {
  throw new FrameError({ field, reason })
}

/** What a msgpack value is, for error messages. */
const kind = (v: unknown): string => {
  switch (typeof v) {
    case "undefined":
      return "nothing"
    case "number":
      return Number.isInteger(v) ? `integer ${v}` : `float ${v}`
    case "bigint":
      return `integer ${v}`
    case "string":
      return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`
    case "boolean":
      return `boolean ${v}`
    default:
      if (v === null) return "nil"
      if (Array.isArray(v)) return `an array of ${v.length}`
      if (v instanceof Uint8Array) return `${v.byteLength} bytes of bin`
      return "a map"
  }
}

const isMap = (v: unknown): v is Header =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map)

const need = (obj: Header, key: string, path: string): unknown => {
  const v = obj[key]
  if (v === undefined) fail(path, "missing")
  return v
}

const string = (v: unknown, path: string): string => typeof v === "string" ? v : fail(path, `expected a string, got ${kind(v)}`)

/** A float field. msgpack-c writes integral doubles as ints, so 64-bit ints count too. */
const number = (v: unknown, path: string): number =>
  typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : fail(path, `expected a number, got ${kind(v)}`)

const boolean = (v: unknown, path: string): boolean =>
  typeof v === "boolean" ? v : fail(path, `expected a boolean, got ${kind(v)}`)

/** A byte count or offset: a non-negative integer. */
const count = (v: unknown, path: string): number => {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v >= 0 ? v : fail(path, `negative: ${v}`)
  if (typeof v === "bigint") return fail(path, v < 0n ? `negative: ${v}` : `${v} is far larger than any frame`)
  return fail(path, `expected a non-negative integer, got ${kind(v)}`)
}

const array = (v: unknown, path: string): ReadonlyArray<unknown> =>
  Array.isArray(v) ? v : fail(path, `expected an array, got ${kind(v)}`)

/** A user map (data, info, extra): any msgpack map; non-string keys become strings. */
const userMap = (v: unknown, path: string): UserMap => {
  if (v === undefined) return {}
  if (isMap(v)) return v
  if (v instanceof Map) {
    const out: Record<string, unknown> = {}
    for (const [k, item] of v) Object.defineProperty(out, String(k), { value: item, enumerable: true, writable: true, configurable: true })
    return out
  }
  return fail(path, `expected a map, got ${kind(v)}`)
}

const shapeOf = (v: unknown, path: string): Array<number> => {
  const items = array(v, path)
  const shape = new Array<number>(items.length)
  for (let i = 0; i < items.length; i++) {
    const d = items[i]
    if (typeof d === "number" && Number.isSafeInteger(d)) {
      if (d < 0) fail(`${path}[${i}]`, `negative dimension ${d}`)
      shape[i] = d
    } else if (typeof d === "bigint") {
      fail(`${path}[${i}]`, d < 0n ? `negative dimension ${d}` : `dimension ${d} is far larger than any frame`)
    } else fail(`${path}[${i}]`, `expected a non-negative integer, got ${kind(d)}`)
  }
  return shape
}

const dtypeOf = (v: unknown, path: string): Dtype => {
  const s = string(v, path)
  return Dtype.is(s) ? s : fail(path, `${JSON.stringify(s)} is not a dtype of the protocol (${Dtype.all.join(", ")})`)
}

/** Bytes a shape of a dtype needs; exact as a string for messages when it overflows. */
const neededBytes = (shape: ReadonlyArray<number>, dtype: Dtype): number => {
  let n = Dtype.itemSize(dtype)
  for (const d of shape) n *= d
  return n
}
const exactBytes = (shape: ReadonlyArray<number>, dtype: Dtype): string =>
  shape.reduce((n, d) => n * BigInt(d), BigInt(Dtype.itemSize(dtype))).toString()

const shapeText = (shape: ReadonlyArray<number>) => `[${shape.join(",")}]`

/** The reader of one frame's payload: bounds and the zero-copy/one-copy rule. */
class Payload {
  readonly frame: Uint8Array
  readonly start: number
  readonly length: number
  /** Bytes of all buffers read so far. */
  described = 0
  constructor(frame: Uint8Array, start: number) {
    this.frame = frame
    this.start = start
    this.length = frame.byteLength - start
  }

  /**
   * A tensor over payload bytes [offset, offset + size); `size` has been checked
   * against shape × dtype. A view when the absolute address is aligned to the
   * item size, otherwise exactly one copy.
   */
  tensor(dtype: Dtype, shape: ReadonlyArray<number>, offset: number, size: number): Tensor {
    const ctor = Dtype.arrayConstructor(dtype)
    const item = ctor.BYTES_PER_ELEMENT
    const absolute = this.frame.byteOffset + this.start + offset
    let data: TensorData
    if (absolute % item === 0) data = new ctor(this.frame.buffer, absolute, size / item)
    else {
      data = new ctor(size / item)
      new Uint8Array(data.buffer).set(this.frame.subarray(this.start + offset, this.start + offset + size))
    }
    return { dtype, shape, data }
  }

  /** Checks a described buffer (shape, dtype, offset, size) against the payload and reads it. */
  buffer(
    shape: ReadonlyArray<number>,
    dtype: Dtype,
    offset: number,
    size: number,
    fields: { readonly size: string; readonly offset: string }
  ): Tensor {
    const needed = neededBytes(shape, dtype)
    if (size !== needed) {
      const beyond = needed > this.length ? `, more than the whole ${this.length}-byte payload` : ""
      fail(fields.size, `${size} bytes, but shape ${shapeText(shape)} × ${dtype} needs ${exactBytes(shape, dtype)}${beyond}`)
    }
    if (offset > this.length || size > this.length - offset) {
      fail(fields.offset, `bytes ${offset}..${offset + size} reach past the end of the ${this.length}-byte payload`)
    }
    // The references never share bytes between buffers. Capping the total keeps a
    // header that points many misaligned buffers at the same bytes from making
    // us copy the payload over and over.
    this.described += size
    if (this.described > this.length) {
      fail(fields.size, `the buffers described so far need ${this.described} bytes, more than the ${this.length}-byte payload holds`)
    }
    return this.tensor(dtype, shape, offset, size)
  }
}

const depthKeys = ["depth_shape", "depth_dtype", "depth_offset", "depth_size"] as const

/** Names are keys on the wire (vectors.json, obs_timestamps): a second use is an error. */
const uniqueName = (v: unknown, path: string, seen: Map<string, string>): string => {
  const name = string(v, path)
  const previous = seen.get(name)
  if (previous !== undefined) fail(path, `${JSON.stringify(name)} already names ${previous}`)
  seen.set(name, path.slice(0, path.lastIndexOf(".")))
  return name
}

const camera = (c: unknown, path: string, payload: Payload, names: Map<string, string>): CameraFrame => {
  if (!isMap(c)) return fail(path, `expected a map, got ${kind(c)}`)
  const name = uniqueName(need(c, "name", `${path}.name`), `${path}.name`, names)
  const timestamp = c.timestamp === undefined ? 0 : number(c.timestamp, `${path}.timestamp`)
  const intrinsics = floats(need(c, "intrinsics", `${path}.intrinsics`), 9, "3×3 K", `${path}.intrinsics`)
  const extrinsics = floats(need(c, "extrinsics", `${path}.extrinsics`), 16, "4×4 T", `${path}.extrinsics`)
  const image = buffer(c, "image", path, payload)
  let depth: Tensor | null = null
  const given = depthKeys.filter((k) => c[k] !== undefined)
  if (given.length === depthKeys.length) depth = buffer(c, "depth", path, payload)
  else if (given.length > 0) {
    const missing = depthKeys.find((k) => c[k] === undefined)!
    fail(`${path}.${missing}`, `missing, but ${given.join(", ")} ${given.length === 1 ? "is" : "are"} given: a depth needs shape, dtype, offset and size`)
  }
  return { name, timestamp, intrinsics, extrinsics, image, depth }
}

const floats = (v: unknown, n: number, what: string, path: string): Float64Array => {
  const items = array(v, path)
  if (items.length !== n) fail(path, `expected ${n} numbers (${what}), got ${items.length}`)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const x = items[i]
    if (typeof x === "number") out[i] = x
    else if (typeof x === "bigint") out[i] = Number(x)
    else fail(`${path}[${i}]`, `expected a number, got ${kind(x)}`)
  }
  return out
}

/** A camera's image or depth from its `<prefix>_shape/_dtype/_offset/_size` keys. */
const buffer = (c: Header, prefix: "image" | "depth", path: string, payload: Payload): Tensor => {
  const fields = {
    shape: `${path}.${prefix}_shape`,
    dtype: `${path}.${prefix}_dtype`,
    offset: `${path}.${prefix}_offset`,
    size: `${path}.${prefix}_size`
  }
  const shape = shapeOf(need(c, `${prefix}_shape`, fields.shape), fields.shape)
  const dtype = dtypeOf(need(c, `${prefix}_dtype`, fields.dtype), fields.dtype)
  const offset = count(need(c, `${prefix}_offset`, fields.offset), fields.offset)
  const size = count(need(c, `${prefix}_size`, fields.size), fields.size)
  return payload.buffer(shape, dtype, offset, size, fields)
}

const proprio = (p: unknown, path: string, payload: Payload, names: Map<string, string>): Proprio => {
  if (!isMap(p)) return fail(path, `expected a map, got ${kind(p)}`)
  const name = uniqueName(need(p, "name", `${path}.name`), `${path}.name`, names)
  const dtype = dtypeOf(need(p, "dtype", `${path}.dtype`), `${path}.dtype`)
  const offset = count(need(p, "offset", `${path}.offset`), `${path}.offset`)
  const size = count(need(p, "size", `${path}.size`), `${path}.size`)
  const item = Dtype.itemSize(dtype)
  if (size % item !== 0) fail(`${path}.size`, `${size} bytes is not a whole number of ${item}-byte ${dtype} values`)
  const shape = [size / item]
  return { name, data: payload.buffer(shape, dtype, offset, size, { size: `${path}.size`, offset: `${path}.offset` }) }
}

const observation = (h: Header, payload: Payload): Observation => {
  const timestamp = number(need(h, "timestamp", "timestamp"), "timestamp")
  const cameraItems = array(need(h, "cameras", "cameras"), "cameras")
  const cameras = new Array<CameraFrame>(cameraItems.length)
  const cameraNames = new Map<string, string>()
  for (let i = 0; i < cameraItems.length; i++) cameras[i] = camera(cameraItems[i], `cameras[${i}]`, payload, cameraNames)
  const proprioItems = h.proprios === undefined ? [] : array(h.proprios, "proprios")
  const proprios = new Array<Proprio>(proprioItems.length)
  const proprioNames = new Map<string, string>()
  for (let i = 0; i < proprioItems.length; i++) proprios[i] = proprio(proprioItems[i], `proprios[${i}]`, payload, proprioNames)
  return { timestamp, cameras, proprios, extra: userMap(h.extra, "extra") }
}

const obsTimestamps = (v: unknown): ObsTimestamps => {
  const m = userMap(v, "obs_timestamps")
  let converted: Record<string, number> | undefined
  for (const k of Object.keys(m)) {
    const v = m[k]
    if (typeof v !== "number") {
      converted ??= { ...(m as ObsTimestamps) }
      Object.defineProperty(converted, k, { value: number(v, joinKey("obs_timestamps", k)), enumerable: true, writable: true, configurable: true })
    }
  }
  return converted ?? (m as ObsTimestamps)
}

const action = (h: Header, payload: Payload): Tensor => {
  const shape = shapeOf(need(h, "shape", "shape"), "shape")
  const dtype = dtypeOf(need(h, "dtype", "dtype"), "dtype")
  const needed = neededBytes(shape, dtype)
  if (needed !== payload.length) {
    fail("payload", `${payload.length} bytes, but shape ${shapeText(shape)} × ${dtype} needs ${needed > payload.length ? exactBytes(shape, dtype) : needed}`)
  }
  return payload.tensor(dtype, shape, 0, needed)
}

const body = (type: string, h: Header, payload: Payload): Message => {
  switch (type) {
    case "metadata":
    case "reset":
    case "obs_request":
      return { type }
    case "apply_action":
    case "action":
      return { type, action: action(h, payload), obsTimestamps: obsTimestamps(h.obs_timestamps) }
    case "metadata_response":
      return { type, data: userMap(h.data, "data") }
    case "obs_response":
      return { type, obs: observation(h, payload) }
    case "reset_response":
      return { type, obs: observation(h, payload), info: userMap(h.info, "info") }
    case "step_response":
      return {
        type,
        obs: observation(h, payload),
        reward: h.reward === undefined ? 0 : number(h.reward, "reward"),
        terminated: h.terminated === undefined ? false : boolean(h.terminated, "terminated"),
        truncated: h.truncated === undefined ? false : boolean(h.truncated, "truncated"),
        info: userMap(h.info, "info")
      }
    default:
      return fail("type", `${JSON.stringify(type)} names no message of the protocol`)
  }
}

/** Decodes a frame or throws FrameError. */
export const decode = (frame: Uint8Array, limits: Limits): Message => {
  if (!(frame instanceof Uint8Array)) fail("frame", `expected a Uint8Array, got ${kind(frame)}`)
  const n = frame.byteLength
  if (n > limits.maxFrameBytes) fail("frame", `${n} bytes, more than the ${limits.maxFrameBytes}-byte limit`)
  if (n < 4) fail("header_len", `the frame has ${n} bytes, fewer than the 4-byte header length`)
  const headerLen = (frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24)) >>> 0
  if (headerLen > limits.maxHeaderBytes) fail("header_len", `${headerLen} bytes, more than the ${limits.maxHeaderBytes}-byte header limit`)
  if (headerLen > n - 4) fail("header_len", `${headerLen} bytes, but only ${n - 4} bytes follow the length`)
  if (headerLen === 0) fail("header", "empty: expected a msgpack map")
  const end = 4 + headerLen
  const reader = new MsgpackReader(frame, 4, end, limits.maxDepth)
  let header: unknown
  try {
    header = reader.read()
  } catch (e) {
    if (e instanceof MsgpackIssue) fail(formatPath(typeof e.path[0] === "string" ? "" : "header", e.path), e.reason)
    throw e
  }
  if (reader.pos !== end) {
    fail("header", `header_len ${headerLen} covers ${end - reader.pos} more byte${end - reader.pos === 1 ? "" : "s"} after the first msgpack value`)
  }
  if (!isMap(header)) {
    return fail("header", header instanceof Map ? "a map with non-string keys" : `expected a msgpack map, got ${kind(header)}`)
  }
  const type = header.type
  if (type === undefined) fail("type", "missing")
  if (typeof type !== "string") fail("type", `expected a string, got ${kind(type)}`)
  return body(type as string, header, new Payload(frame, end))
}
