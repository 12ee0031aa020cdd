import { Schema } from "effect"

/** The numpy dtype names the protocol carries. Byte order is always little-endian. */
export const dtypes = [
  "uint8",
  "int8",
  "uint16",
  "int16",
  "uint32",
  "int32",
  "uint64",
  "int64",
  "float16",
  "float32",
  "float64",
  "bool"
] as const

export type Dtype = typeof dtypes[number]

/** Element storage per dtype. float16 travels as raw IEEE half bits, bool as 0/1 bytes. */
export type TensorData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array

export interface TypedArrayConstructor {
  readonly BYTES_PER_ELEMENT: number
  new(length: number): TensorData
  new(buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData
}

const arrayConstructors: Readonly<Record<Dtype, TypedArrayConstructor>> = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  uint64: BigUint64Array,
  int64: BigInt64Array,
  float16: Uint16Array,
  float32: Float32Array,
  float64: Float64Array,
  bool: Uint8Array
}

export const Dtype = {
  schema: Schema.Literals(dtypes),
  all: dtypes,
  is: (u: unknown): u is Dtype => typeof u === "string" && Object.hasOwn(arrayConstructors, u),
  /** Bytes per element. */
  itemSize: (dtype: Dtype): number => arrayConstructors[dtype].BYTES_PER_ELEMENT,
  /** The typed array class that holds elements of `dtype`. */
  arrayConstructor: (dtype: Dtype): TypedArrayConstructor => arrayConstructors[dtype],
  /** Whether elements are bigint (64-bit integers). */
  isBigInt: (dtype: Dtype): boolean => dtype === "uint64" || dtype === "int64"
} as const

/** Converts IEEE 754 half-precision bits to a number (exact: every half is a double). */
export const halfToNumber = (bits: number): number => {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >> 10) & 0x1f
  const fraction = bits & 0x3ff
  if (exponent === 0) return sign * fraction * 2 ** -24
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15)
}

/** Rounds a number to the nearest IEEE half (ties to even) and returns its bits. */
export const numberToHalf = (value: number): number => {
  if (Number.isNaN(value)) return 0x7e00
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0
  const abs = Math.abs(value)
  if (abs >= 65520) return sign | 0x7c00 // rounds past the largest half (65504)
  if (abs < 2 ** -14) {
    // subnormal: units of 2^-24, round half to even
    return sign | roundHalfEven(abs * 2 ** 24)
  }
  let exponent = Math.floor(Math.log2(abs))
  // log2 can be off by one near powers of two
  if (2 ** exponent > abs) exponent--
  else if (2 ** (exponent + 1) <= abs) exponent++
  const mantissa = roundHalfEven((abs / 2 ** exponent - 1) * 1024)
  if (mantissa === 1024) return sign | ((exponent + 16) << 10)
  return sign | ((exponent + 15) << 10) | mantissa
}

const roundHalfEven = (x: number): number => {
  const floor = Math.floor(x)
  const diff = x - floor
  if (diff > 0.5) return floor + 1
  if (diff < 0.5) return floor
  return floor % 2 === 0 ? floor : floor + 1
}
