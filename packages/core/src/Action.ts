/**
 * Actions as the policy hands them over, normalised to what travels: float32
 * (the Python reference casts every action to float32 before sending).
 */
import { Tensor } from "@chiral/protocol"

/** One action: a tensor (any numeric dtype), a Float32Array, or plain numbers. */
export type Action = Tensor | ArrayLike<number>

/** A chunk of actions for the legacy `step`: a tensor [N, D], or rows. */
export type ActionChunk = Tensor | ReadonlyArray<ArrayLike<number>>

const isTensor = (u: unknown): u is Tensor =>
  typeof u === "object" && u !== null && "dtype" in u && "shape" in u && "data" in u

const toFloat32 = (values: ArrayLike<number | bigint>): Float32Array => {
  if (values instanceof Float32Array) return values
  const out = new Float32Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = Number(values[i])
  return out
}

const tensorToFloat32 = (t: Tensor): Tensor =>
  t.dtype === "float32" ? t : Tensor.make("float32", t.shape, toFloat32(Tensor.toArray(t).map(Number)))

/** An action as a float32 tensor: a flat action becomes shape [D]; a tensor keeps its shape. */
export const toTensor = (action: Action): Tensor =>
  isTensor(action) ? tensorToFloat32(action) : Tensor.make("float32", [action.length], toFloat32(action))

/** A chunk as a float32 [N, D] tensor (rows must have equal lengths). */
export const chunkToTensor = (chunk: ActionChunk): Tensor => {
  if (isTensor(chunk)) return tensorToFloat32(chunk)
  const n = chunk.length
  const d = n === 0 ? 0 : chunk[0]!.length
  const data = new Float32Array(n * d)
  for (let i = 0; i < n; i++) {
    const row = chunk[i]!
    if (row.length !== d) throw new RangeError(`action chunk row ${i} has ${row.length} values, row 0 has ${d}`)
    for (let j = 0; j < d; j++) data[i * d + j] = row[j]!
  }
  return Tensor.make("float32", [n, d], data)
}
