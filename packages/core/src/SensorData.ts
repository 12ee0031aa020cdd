/**
 * Turns what a sensor writer hands over into a tensor of the configured dtype
 * and shape, or says why it cannot.
 */
import { Dtype, Tensor, type TensorData } from "@chiral/protocol"

/** A tensor, a typed array holding the elements row-major, or plain numbers. */
export type SensorInput = Tensor | TensorData | ArrayLike<number>

export interface WriteOptions {
  /**
   * Copy the data (default true). With `false` the state keeps the caller's
   * buffer: the caller must never write to it again, which saves one copy per
   * frame for writers that allocate a fresh buffer each time.
   */
  readonly copy?: boolean | undefined
}

const isTensor = (u: SensorInput): u is Tensor =>
  typeof u === "object" && u !== null && "dtype" in u && "shape" in u && "data" in u

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i])

const shapeText = (shape: ReadonlyArray<number>): string => `[${shape.join(", ")}]`

/**
 * The input as a tensor of `dtype` and `shape` (copied unless `copy: false`), or a reason.
 * A copy goes into `target(count)` when given (a buffer of `count` elements of
 * `dtype` to overwrite whole, e.g. a recycled one), else into a fresh array.
 */
export const toTensor = (
  input: SensorInput,
  dtype: Dtype,
  shape: ReadonlyArray<number>,
  options?: WriteOptions,
  target?: (count: number) => TensorData
): Tensor | string => {
  const copy = options?.copy ?? true
  const count = Tensor.elementCount(shape)
  const ctor = Dtype.arrayConstructor(dtype)
  const copied = (data: TensorData): TensorData => {
    if (target === undefined) return data.slice()
    const out = target(count)
    ;(out as Uint8Array).set(data as Uint8Array)
    return out
  }
  if (isTensor(input)) {
    if (input.dtype !== dtype) return `expected dtype ${dtype}, got ${input.dtype}`
    if (!sameShape(input.shape, shape)) return `expected shape ${shapeText(shape)}, got ${shapeText(input.shape)}`
    if (!(input.data instanceof ctor) || input.data.length !== count) {
      return Tensor.problem(input) ?? `expected ${count} ${dtype} elements`
    }
    return Tensor.make(dtype, shape, copy ? copied(input.data) : input.data)
  }
  if (ArrayBuffer.isView(input)) {
    if (!(input instanceof ctor)) {
      return `expected a ${ctor.name} for dtype ${dtype}, got a ${input.constructor.name}`
    }
    const data = input as TensorData
    if (data.length !== count) return `expected ${count} elements for shape ${shapeText(shape)}, got ${data.length}`
    return Tensor.make(dtype, shape, copy ? copied(data) : data)
  }
  if (Dtype.isBigInt(dtype)) return `dtype ${dtype} needs a ${ctor.name}, got plain numbers`
  if (input.length !== count) return `expected ${count} elements for shape ${shapeText(shape)}, got ${input.length}`
  const data = target?.(count) ?? new ctor(count)
  for (let i = 0; i < count; i++) {
    const v = input[i]
    if (typeof v !== "number") return `element ${i} is not a number`
    ;(data as Float64Array)[i] = v
  }
  return Tensor.make(dtype, shape, data)
}
