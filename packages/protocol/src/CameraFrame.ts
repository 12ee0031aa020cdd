import { Schema } from "effect"
import { Tensor } from "./Tensor.js"

/**
 * One camera's snapshot. Intrinsics and extrinsics travel with every frame
 * because wrist cameras move.
 */
export interface CameraFrame {
  readonly name: string
  /** Capture time (monotonic seconds) of the image. */
  readonly timestamp: number
  /** 3×3 K, row-major (9 values). */
  readonly intrinsics: Float64Array
  /** 4×4 camera-to-world T, row-major (16 values). */
  readonly extrinsics: Float64Array
  /** Usually uint8 [H, W, C]. */
  readonly image: Tensor
  /** Usually float32 metres or uint16 millimetres [H, W]; null when the camera has none. */
  readonly depth: Tensor | null
}

const floats = (n: number) =>
  Schema.instanceOf(Float64Array).check(
    Schema.makeFilter((a) => a.length === n || `expected ${n} values, got ${a.length}`)
  )

const schema: Schema.Codec<CameraFrame> = Schema.Struct({
  name: Schema.String,
  timestamp: Schema.Number,
  intrinsics: floats(9),
  extrinsics: floats(16),
  image: Tensor.schema,
  depth: Schema.NullOr(Tensor.schema)
})

const identity3 = () => Float64Array.of(1, 0, 0, 0, 1, 0, 0, 0, 1)
const identity4 = () => Float64Array.of(1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1)

export const CameraFrame = {
  schema,
  /** A camera frame; intrinsics and extrinsics default to identity, depth to none. */
  make: (options: {
    readonly name: string
    readonly timestamp: number
    readonly image: Tensor
    readonly depth?: Tensor | null | undefined
    readonly intrinsics?: ArrayLike<number> | undefined
    readonly extrinsics?: ArrayLike<number> | undefined
  }): CameraFrame => ({
    name: options.name,
    timestamp: options.timestamp,
    intrinsics: options.intrinsics ? Float64Array.from(options.intrinsics) : identity3(),
    extrinsics: options.extrinsics ? Float64Array.from(options.extrinsics) : identity4(),
    image: options.image,
    depth: options.depth ?? null
  })
} as const
