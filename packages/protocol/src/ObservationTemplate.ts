/**
 * The header of an `obs_response` as a template. From one observation of a
 * robot to the next, only its float64 fields change (the observation's and
 * each camera's timestamp, K and T): names, dtypes, shapes, offsets and
 * sizes stay, and in the Python dialect every one of those floats is written
 * as a 9-byte float64, so each sits at the same place in the header. A
 * header encoded once is then copied and those places overwritten, which
 * gives the bytes the encoder would write.
 *
 * Why: a server encodes an observation per request, at robot rates, where the
 * encoder's code runs cold. Measured inside `chiral serve` (2 cameras 64×48
 * with depth, the Python reference's client at 30 Hz): 0.06 ms per header
 * cold against 0.014 ms for the same encode repeated at once.
 *
 * Only an observation whose layout matches the template's in every respect
 * the header records, whose tensors are consistent, and whose `extra` is an
 * empty plain object is filled in; anything else is encoded in full.
 */
import type { CameraFrame } from "./CameraFrame.js"
import type { Observation } from "./Observation.js"
import { Tensor } from "./Tensor.js"

/** A tensor's part of the layout: what its header fields say. */
interface TensorLayout {
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly bytes: number
}

interface CameraLayout {
  readonly name: string
  readonly image: TensorLayout
  readonly depth: TensorLayout | undefined
}

interface ProprioLayout {
  readonly name: string
  readonly data: TensorLayout
}

export interface ObservationTemplate {
  /** The frame's first part: the 4-byte length prefix and the header. */
  readonly header: Uint8Array
  /** Where each float64 of the header starts (its 0xcb marker), in the order the encoder writes them. */
  readonly doubles: ReadonlyArray<number>
  readonly cameras: ReadonlyArray<CameraLayout>
  readonly proprios: ReadonlyArray<ProprioLayout>
}

/** Floats of the header per camera: timestamp, K (9), T (16). */
const doublesPerCamera = 26

const layoutOf = (t: Tensor): TensorLayout => ({ dtype: t.dtype, shape: [...t.shape], bytes: t.data.byteLength })

/**
 * The template of a header just encoded for `obs` (Python dialect, `extra`
 * empty), with the places of its float64s as the encoder recorded them;
 * undefined when they are not the ones a template fills in.
 */
export const record = (
  header: Uint8Array,
  doubles: ReadonlyArray<number>,
  obs: Observation
): ObservationTemplate | undefined => {
  if (doubles.length !== 1 + doublesPerCamera * obs.cameras.length) return undefined
  // Other proprio dtypes are sent converted to float32 (what the header says), not as they are.
  if (obs.proprios.some((p) => p.data.dtype !== "float32")) return undefined
  return {
    header: header.slice(),
    doubles: [...doubles],
    cameras: obs.cameras.map((c) => ({
      name: c.name,
      image: layoutOf(c.image),
      depth: c.depth === null ? undefined : layoutOf(c.depth)
    })),
    proprios: obs.proprios.map((p) => ({ name: p.name, data: layoutOf(p.data) }))
  }
}

const sameTensor = (t: Tensor, layout: TensorLayout): boolean => {
  if (t.dtype !== layout.dtype || t.data.byteLength !== layout.bytes || t.shape.length !== layout.shape.length) {
    return false
  }
  for (let i = 0; i < t.shape.length; i++) if (t.shape[i] !== layout.shape[i]) return false
  return Tensor.problem(t) === undefined
}

const isMatrix = (values: unknown, n: number): values is Float64Array =>
  values instanceof Float64Array && values.length === n

const sameCamera = (c: CameraFrame | undefined, layout: CameraLayout): c is CameraFrame =>
  c !== undefined && c !== null && c.name === layout.name &&
  isMatrix(c.intrinsics, 9) &&
  isMatrix(c.extrinsics, 16) &&
  sameTensor(c.image, layout.image) &&
  (c.depth === null ? layout.depth === undefined : layout.depth !== undefined && sameTensor(c.depth, layout.depth))

const isEmptyPlainObject = (value: unknown): boolean =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype &&
  Object.getOwnPropertyNames(value).length === 0 && Object.getOwnPropertySymbols(value).length === 0

/** Whether `obs` can be: nothing in `extra` (the caller checks for the Python dialect). */
export const fits = (obs: Observation): boolean => isEmptyPlainObject(obs.extra)

/**
 * The frame's parts for `obs` from `template` (a fresh copy of the header,
 * filled in, then the tensors' bytes as views, as the encoder gives them), or
 * undefined when `obs` does not match the template's layout. What the
 * encoder checks holds here too: the names equal the template's, which were
 * unique, and every tensor and matrix is checked as the encoder checks it.
 */
export const fill = (template: ObservationTemplate, obs: Observation): Array<Uint8Array> | undefined => {
  const cameras = obs.cameras
  const proprios = obs.proprios
  if (cameras.length !== template.cameras.length || proprios.length !== template.proprios.length || !fits(obs)) {
    return undefined
  }
  for (let i = 0; i < cameras.length; i++) if (!sameCamera(cameras[i], template.cameras[i]!)) return undefined
  for (let i = 0; i < proprios.length; i++) {
    const p = proprios[i]
    const layout = template.proprios[i]!
    if (p === undefined || p === null || p.name !== layout.name || !sameTensor(p.data, layout.data)) return undefined
  }
  const header = template.header.slice()
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength)
  const at = template.doubles
  let k = 0
  const put = (v: number) => view.setFloat64(at[k++]! + 1, v)
  put(obs.timestamp)
  const parts: Array<Uint8Array> = [header]
  for (const c of cameras) {
    put(c.timestamp)
    for (let i = 0; i < 9; i++) put(c.intrinsics[i]!)
    for (let i = 0; i < 16; i++) put(c.extrinsics[i]!)
    if (c.image.data.byteLength > 0) parts.push(Tensor.bytes(c.image))
    if (c.depth !== null && c.depth.data.byteLength > 0) parts.push(Tensor.bytes(c.depth))
  }
  for (const p of proprios) if (p.data.data.byteLength > 0) parts.push(Tensor.bytes(p.data))
  return parts
}
