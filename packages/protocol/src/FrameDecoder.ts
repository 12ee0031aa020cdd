import { uninitialized } from "./Allocate.js"
import { Dtype } from "./Dtype.js"
import { lending } from "./FrameLease.js"
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

/**
 * Where a value sits in the header. Joined into a string only when an error is
 * reported: building path strings for every field would cost more than the
 * validation itself.
 */
type Where = string | { readonly parent: Where; readonly key: string | number }

const at = (parent: Where, key: string | number): Where => ({ parent, key })

const render = (where: Where): string => typeof where === "string" ? where : joinKey(render(where.parent), where.key)

const fail = (where: Where, reason: string): never => {
  throw new FrameError({ field: render(where), reason })
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

const need = (obj: Header, key: string, parent: Where): unknown => {
  const v = obj[key]
  if (v === undefined) fail(at(parent, key), "missing")
  return v
}

const string = (v: unknown, path: Where): string => typeof v === "string" ? v : fail(path, `expected a string, got ${kind(v)}`)

/** A float field. msgpack-c writes integral doubles as ints, so 64-bit ints count too. */
const number = (v: unknown, path: Where): number =>
  typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : fail(path, `expected a number, got ${kind(v)}`)

const boolean = (v: unknown, path: Where): boolean =>
  typeof v === "boolean" ? v : fail(path, `expected a boolean, got ${kind(v)}`)

/** A byte count or offset: a non-negative integer. */
const count = (v: unknown, path: Where): number => {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v >= 0 ? v : fail(path, `negative: ${v}`)
  if (typeof v === "bigint") return fail(path, v < 0n ? `negative: ${v}` : `${v} is far larger than any frame`)
  return fail(path, `expected a non-negative integer, got ${kind(v)}`)
}

const array = (v: unknown, path: Where): ReadonlyArray<unknown> =>
  Array.isArray(v) ? v : fail(path, `expected an array, got ${kind(v)}`)

/** A user map (data, info, extra): any msgpack map; non-string keys become strings. */
const userMap = (v: unknown, path: Where): UserMap => {
  if (v === undefined) return {}
  if (isMap(v)) return v
  if (v instanceof Map) {
    const out: Record<string, unknown> = {}
    for (const [k, item] of v) Object.defineProperty(out, String(k), { value: item, enumerable: true, writable: true, configurable: true })
    return out
  }
  return fail(path, `expected a map, got ${kind(v)}`)
}

const shapeOf = (v: unknown, path: Where): Array<number> => {
  const items = array(v, path)
  const shape = new Array<number>(items.length)
  for (let i = 0; i < items.length; i++) {
    const d = items[i]
    if (typeof d === "number" && Number.isSafeInteger(d)) {
      if (d < 0) fail(at(path, i), `negative dimension ${d}`)
      shape[i] = d
    } else if (typeof d === "bigint") {
      fail(at(path, i), d < 0n ? `negative dimension ${d}` : `dimension ${d} is far larger than any frame`)
    } else fail(at(path, i), `expected a non-negative integer, got ${kind(d)}`)
  }
  return shape
}

const dtypeOf = (v: unknown, path: Where): Dtype => {
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
  /** The frame's memory is lent (`FrameLease`): every view into it is tracked. */
  readonly lent: boolean
  /** Bytes of all buffers read so far. */
  described = 0
  constructor(frame: Uint8Array, start: number) {
    this.frame = frame
    this.start = start
    this.length = frame.byteLength - start
    this.lent = lending.isLent(frame.buffer)
  }

  /**
   * A tensor over payload bytes [offset, offset + size); `size` has been checked
   * against shape × dtype. A view when the absolute address is aligned to the
   * item size, otherwise exactly one copy. A view into lent memory is tracked,
   * so that the memory is not reused while the view lives (`FrameLease`).
   */
  tensor(dtype: Dtype, shape: ReadonlyArray<number>, offset: number, size: number): Tensor {
    const ctor = Dtype.arrayConstructor(dtype)
    const item = ctor.BYTES_PER_ELEMENT
    const absolute = this.frame.byteOffset + this.start + offset
    let data: TensorData
    if (absolute % item === 0) {
      data = new ctor(this.frame.buffer, absolute, size / item)
      if (this.lent) lending.track(data)
    } else {
      const copy = uninitialized(size)
      new Uint8Array(copy).set(this.frame.subarray(this.start + offset, this.start + offset + size))
      data = new ctor(copy, 0, size / item)
    }
    return { dtype, shape, data }
  }

  /** Checks a described buffer (shape, dtype, offset, size) against the payload and reads it. */
  buffer(
    shape: ReadonlyArray<number>,
    dtype: Dtype,
    offset: number,
    size: number,
    fields: { readonly size: Where; readonly offset: Where }
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

/** Names are keys on the wire (vectors.json, obs_timestamps): a second use is an error. */
const uniqueName = (item: Header, where: Where, seen: Map<string, Where>): string => {
  const name = string(need(item, "name", where), at(where, "name"))
  const previous = seen.get(name)
  if (previous !== undefined) fail(at(where, "name"), `${JSON.stringify(name)} already names ${render(previous)}`)
  seen.set(name, where)
  return name
}

const camera = (c: unknown, where: Where, payload: Payload, names: Map<string, Where>, matrices: Float64Array): CameraFrame => {
  if (!isMap(c)) return fail(where, `expected a map, got ${kind(c)}`)
  const name = uniqueName(c, where, names)
  const timestamp = c.timestamp === undefined ? 0 : number(c.timestamp, at(where, "timestamp"))
  const intrinsics = floats(need(c, "intrinsics", where), 9, "3×3 K", at(where, "intrinsics"), matrices.subarray(0, 9))
  const extrinsics = floats(need(c, "extrinsics", where), 16, "4×4 T", at(where, "extrinsics"), matrices.subarray(9, 25))
  const image = buffer(c, bufferKeys.image, where, payload)
  let depth: Tensor | null = null
  const keys = bufferKeys.depth
  const given = [keys.shape, keys.dtype, keys.offset, keys.size].filter((k) => c[k] !== undefined)
  if (given.length === 4) depth = buffer(c, keys, where, payload)
  else if (given.length > 0) {
    const missing = [keys.shape, keys.dtype, keys.offset, keys.size].find((k) => c[k] === undefined)!
    fail(at(where, missing), `missing, but ${given.join(", ")} ${given.length === 1 ? "is" : "are"} given: a depth needs shape, dtype, offset and size`)
  }
  return { name, timestamp, intrinsics, extrinsics, image, depth }
}

/** Reads n numbers into `out` (a slice of one allocation shared by all cameras: typed arrays are costly to create). */
const floats = (v: unknown, n: number, what: string, path: Where, out: Float64Array): Float64Array => {
  const items = array(v, path)
  if (items.length !== n) fail(path, `expected ${n} numbers (${what}), got ${items.length}`)
  for (let i = 0; i < n; i++) {
    const x = items[i]
    if (typeof x === "number") out[i] = x
    else if (typeof x === "bigint") out[i] = Number(x)
    else fail(at(path, i), `expected a number, got ${kind(x)}`)
  }
  return out
}

interface BufferKeys {
  readonly shape: string
  readonly dtype: string
  readonly offset: string
  readonly size: string
}

const bufferKeys: Readonly<Record<"image" | "depth", BufferKeys>> = {
  image: { shape: "image_shape", dtype: "image_dtype", offset: "image_offset", size: "image_size" },
  depth: { shape: "depth_shape", dtype: "depth_dtype", offset: "depth_offset", size: "depth_size" }
}

/** A camera's image or depth from its `<prefix>_shape/_dtype/_offset/_size` keys. */
const buffer = (c: Header, keys: BufferKeys, where: Where, payload: Payload): Tensor => {
  const shape = shapeOf(need(c, keys.shape, where), at(where, keys.shape))
  const dtype = dtypeOf(need(c, keys.dtype, where), at(where, keys.dtype))
  const offset = count(need(c, keys.offset, where), at(where, keys.offset))
  const size = count(need(c, keys.size, where), at(where, keys.size))
  return payload.buffer(shape, dtype, offset, size, { size: at(where, keys.size), offset: at(where, keys.offset) })
}

const proprio = (p: unknown, where: Where, payload: Payload, names: Map<string, Where>): Proprio => {
  if (!isMap(p)) return fail(where, `expected a map, got ${kind(p)}`)
  const name = uniqueName(p, where, names)
  const dtype = dtypeOf(need(p, "dtype", where), at(where, "dtype"))
  const offset = count(need(p, "offset", where), at(where, "offset"))
  const size = count(need(p, "size", where), at(where, "size"))
  const item = Dtype.itemSize(dtype)
  if (size % item !== 0) fail(at(where, "size"), `${size} bytes is not a whole number of ${item}-byte ${dtype} values`)
  const shape = [size / item]
  return { name, data: payload.buffer(shape, dtype, offset, size, { size: at(where, "size"), offset: at(where, "offset") }) }
}

const observation = (h: Header, payload: Payload): Observation => {
  const timestamp = number(need(h, "timestamp", ""), "timestamp")
  const cameraItems = array(need(h, "cameras", ""), "cameras")
  const cameras = new Array<CameraFrame>(cameraItems.length)
  const cameraNames = new Map<string, Where>()
  const matrices = new Float64Array(25 * cameraItems.length)
  for (let i = 0; i < cameraItems.length; i++) {
    cameras[i] = camera(cameraItems[i], at("cameras", i), payload, cameraNames, matrices.subarray(25 * i, 25 * i + 25))
  }
  const proprioItems = h.proprios === undefined ? [] : array(h.proprios, "proprios")
  const proprios = new Array<Proprio>(proprioItems.length)
  const proprioNames = new Map<string, Where>()
  for (let i = 0; i < proprioItems.length; i++) proprios[i] = proprio(proprioItems[i], at("proprios", i), payload, proprioNames)
  return { timestamp, cameras, proprios, extra: userMap(h.extra, "extra") }
}

const obsTimestamps = (v: unknown): ObsTimestamps => {
  const m = userMap(v, "obs_timestamps")
  let converted: Record<string, number> | undefined
  for (const k of Object.keys(m)) {
    const v = m[k]
    if (typeof v !== "number") {
      converted ??= { ...(m as ObsTimestamps) }
      Object.defineProperty(converted, k, { value: number(v, at("obs_timestamps", k)), enumerable: true, writable: true, configurable: true })
    }
  }
  return converted ?? (m as ObsTimestamps)
}

const action = (h: Header, payload: Payload): Tensor => {
  const shape = shapeOf(need(h, "shape", ""), "shape")
  const dtype = dtypeOf(need(h, "dtype", ""), "dtype")
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

type BareType = "metadata" | "reset" | "obs_request"

/** A 4-byte little-endian length, then the msgpack map {"type": `type`}. */
const bareFrame = (type: BareType): Uint8Array => {
  const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0))
  const header = [0x81, 0xa4, ...ascii("type"), 0xa0 | type.length, ...ascii(type)]
  return Uint8Array.from([header.length, 0, 0, 0, ...header])
}

const bareFrames: ReadonlyArray<readonly [BareType, Uint8Array]> = (["obs_request", "metadata", "reset"] as const).map(
  (type) => [type, bareFrame(type)] as const
)

/**
 * The requests without a body (obs_request, metadata, reset) as the Python
 * and C++ references and this encoder write them, recognised by their bytes
 * before the msgpack reader is set up: a server reads one per request, at
 * robot rates, where the general path runs cold (0.024 ms measured inside
 * `chiral serve` with the Python reference's client at 30 Hz). Any other
 * form of them (more keys, another order) takes the general path.
 */
const longestBareFrame = Math.max(...bareFrames.map(([, bytes]) => bytes.byteLength))

const bareRequest = (frame: Uint8Array): Message | undefined => {
  for (const [type, bytes] of bareFrames) {
    if (frame.byteLength !== bytes.byteLength) continue
    let i = 0
    while (i < bytes.byteLength && frame[i] === bytes[i]) i++
    if (i === bytes.byteLength) return { type }
  }
  return undefined
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
  // The limits checked above, and the map's one level of nesting, hold for these.
  if (n <= longestBareFrame && limits.maxDepth >= 1) {
    const bare = bareRequest(frame)
    if (bare !== undefined) return bare
  }
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
