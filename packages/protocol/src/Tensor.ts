import { Schema } from "effect"
import { Dtype, halfToNumber, type TensorData } from "./Dtype.js"

export type { TensorData } from "./Dtype.js"

/**
 * An n-dimensional array: numpy dtype name, shape, and a typed array holding the
 * elements row-major. `data.length` is the product of `shape`.
 */
export interface Tensor {
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: TensorData
}

/** A tensor whose dtype, shape and data disagree. */
export class TensorError extends Schema.TaggedError<TensorError>()("TensorError", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

const isTensorData = (u: unknown): u is TensorData =>
  ArrayBuffer.isView(u) && !(u instanceof DataView)

const elementCount = (shape: ReadonlyArray<number>): number => {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Why `t` is not a consistent tensor, or undefined when it is. */
const problem = (t: Tensor): string | undefined => {
  if (!Dtype.is(t.dtype)) return `unknown dtype ${JSON.stringify(t.dtype)}`
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) return `shape [${t.shape.join(",")}] has a dimension that is not a non-negative integer`
  }
  const ctor = Dtype.arrayConstructor(t.dtype)
  if (!(t.data instanceof ctor)) {
    return `dtype ${t.dtype} needs a ${ctor.name}, got ${isTensorData(t.data) ? t.data.constructor.name : typeof t.data}`
  }
  const n = elementCount(t.shape)
  if (t.data.length !== n) return `shape [${t.shape.join(",")}] needs ${n} elements, data has ${t.data.length}`
  return undefined
}

const make = (dtype: Dtype, shape: ReadonlyArray<number>, data: TensorData): Tensor => {
  const t: Tensor = { dtype, shape: Object.freeze([...shape]), data }
  const p = problem(t)
  if (p !== undefined) throw new TensorError({ reason: p })
  return t
}

const zeros = (dtype: Dtype, shape: ReadonlyArray<number>): Tensor =>
  make(dtype, shape, new (Dtype.arrayConstructor(dtype))(elementCount(shape)))

/** The tensor's bytes, as a view (no copy). */
const bytes = (t: Tensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)

/**
 * A tensor over `source` bytes (little-endian). A view when the bytes are aligned to
 * the element size, otherwise one copy. `source.byteLength` must equal the tensor's size.
 */
const fromBytes = (dtype: Dtype, shape: ReadonlyArray<number>, source: Uint8Array): Tensor => {
  const ctor = Dtype.arrayConstructor(dtype)
  const size = ctor.BYTES_PER_ELEMENT
  const n = source.byteLength / size
  let data: TensorData
  if (source.byteOffset % size === 0) {
    data = new ctor(source.buffer, source.byteOffset, n)
  } else {
    data = new ctor(n)
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(source)
  }
  return make(dtype, shape, data)
}

/** The elements as plain values: numbers, bigints (64-bit ints), booleans (bool); float16 decoded. */
const toArray = (t: Tensor): Array<number | bigint | boolean> => {
  const out = new Array<number | bigint | boolean>(t.data.length)
  const data = t.data
  if (t.dtype === "float16") for (let i = 0; i < data.length; i++) out[i] = halfToNumber(data[i] as number)
  else if (t.dtype === "bool") for (let i = 0; i < data.length; i++) out[i] = data[i] !== 0
  else for (let i = 0; i < data.length; i++) out[i] = data[i]!
  return out
}

const schema: Schema.Codec<Tensor> = Schema.Struct({
  dtype: Dtype.schema,
  shape: Schema.Array(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  data: Schema.declare(isTensorData, { expected: "a typed array" })
}).check(Schema.makeFilter((t) => problem(t) ?? true))

export const Tensor = {
  schema,
  make,
  zeros,
  bytes,
  fromBytes,
  toArray,
  /** Why `t` is not a consistent tensor, or undefined. */
  problem,
  elementCount,
  itemSize: Dtype.itemSize,
  byteLength: (t: Tensor): number => t.data.byteLength
} as const
