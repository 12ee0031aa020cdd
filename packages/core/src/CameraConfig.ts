/**
 * What a camera delivers, fixed when the server starts: the shapes and dtypes
 * every update is checked against, and the initial K and T.
 */
import { Dtype } from "@chiral/protocol"
import { identity, type MatrixInput, toRowMajor } from "./Matrix.js"
import { ConfigError } from "./SensorError.js"

export interface CameraConfig {
  readonly name: string
  readonly height: number
  readonly width: number
  readonly channels: number
  readonly hasDepth: boolean
  readonly imageDtype: Dtype
  readonly depthDtype: Dtype
  /** Initial 3×3 K, row-major. */
  readonly intrinsics: Float64Array
  /** Initial 4×4 camera-to-world T, row-major. */
  readonly extrinsics: Float64Array
}

export interface CameraConfigInput {
  readonly name: string
  readonly height: number
  readonly width: number
  /** Default 3. */
  readonly channels?: number | undefined
  /** Default false. */
  readonly hasDepth?: boolean | undefined
  /** Default "uint8". */
  readonly imageDtype?: Dtype | undefined
  /** Default "float32" (metres); "uint16" for millimetres. */
  readonly depthDtype?: Dtype | undefined
  /** Default identity. */
  readonly intrinsics?: MatrixInput | undefined
  /** Default identity. */
  readonly extrinsics?: MatrixInput | undefined
}

const dimension = (name: string, what: string, value: number): ConfigError | undefined =>
  Number.isSafeInteger(value) && value > 0
    ? undefined
    : new ConfigError({ sensor: name, reason: `${what} must be a positive integer, got ${value}` })

/** A complete camera config with defaults filled in, or why the input cannot be one. */
export const make = (input: CameraConfigInput): CameraConfig | ConfigError => {
  const { name } = input
  const channels = input.channels ?? 3
  const bad = dimension(name, "height", input.height) ?? dimension(name, "width", input.width) ??
    dimension(name, "channels", channels)
  if (bad) return bad
  const imageDtype = input.imageDtype ?? "uint8"
  const depthDtype = input.depthDtype ?? "float32"
  for (const dtype of [imageDtype, depthDtype]) {
    if (!Dtype.is(dtype)) return new ConfigError({ sensor: name, reason: `unknown dtype ${JSON.stringify(dtype)}` })
  }
  const intrinsics = input.intrinsics === undefined ? identity(3) : toRowMajor(input.intrinsics, 3)
  if (typeof intrinsics === "string") return new ConfigError({ sensor: name, reason: `intrinsics: ${intrinsics}` })
  const extrinsics = input.extrinsics === undefined ? identity(4) : toRowMajor(input.extrinsics, 4)
  if (typeof extrinsics === "string") return new ConfigError({ sensor: name, reason: `extrinsics: ${extrinsics}` })
  return {
    name,
    height: input.height,
    width: input.width,
    channels,
    hasDepth: input.hasDepth ?? false,
    imageDtype,
    depthDtype,
    intrinsics,
    extrinsics
  }
}

/** [H, W, C], as images travel. */
export const imageShape = (config: CameraConfig): ReadonlyArray<number> => [config.height, config.width, config.channels]

/** [H, W], as depth travels. */
export const depthShape = (config: CameraConfig): ReadonlyArray<number> => [config.height, config.width]
