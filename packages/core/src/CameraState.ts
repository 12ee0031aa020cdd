/**
 * One camera's live state (image, depth, K, T, capture time) in its own Ref.
 *
 * The Ref holds an immutable snapshot that every update replaces whole, so a
 * reader always sees one consistent camera, writers of different cameras never
 * contend, and taking a snapshot copies nothing: the bytes were copied once,
 * when they were written. Frames handed out by `snapshot` share those buffers
 * and must be treated as read-only.
 */
import type { CameraFrame } from "@chiral/protocol"
import { Tensor } from "@chiral/protocol"
import { Clock, Effect, Ref } from "effect"
import * as CameraConfig from "./CameraConfig.js"
import { type MatrixInput, toRowMajor } from "./Matrix.js"
import { type SensorInput, toTensor, type WriteOptions } from "./SensorData.js"
import { SensorError } from "./SensorError.js"

export interface CameraState {
  readonly config: CameraConfig.CameraConfig
  readonly ref: Ref.Ref<CameraFrame>
  /** Replaces the image and stamps the capture time (see `captureTime`). */
  readonly updateImage: (image: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly updateDepth: (depth: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly updateIntrinsics: (k: MatrixInput) => Effect.Effect<void, SensorError>
  readonly updateExtrinsics: (t: MatrixInput) => Effect.Effect<void, SensorError>
  /** The camera as it is now (one consistent frame). */
  readonly snapshot: Effect.Effect<CameraFrame>
}

/**
 * Capture time in seconds on the monotonic clock of Effect's `Clock`. With the
 * live clock on Node that is `process.hrtime` — CLOCK_MONOTONIC, the base of
 * Python's `time.monotonic()` and C++'s `steady_clock` on Linux — so stamps
 * from TS, Python and C++ processes on one machine compare directly. Under
 * `TestClock` it is virtual time.
 */
export const captureTime: Effect.Effect<number> = Effect.map(Clock.monotonicTimeNanos, (ns) => Number(ns) / 1e9)

export const make = (config: CameraConfig.CameraConfig): Effect.Effect<CameraState> =>
  Effect.gen(function*() {
    const imageShape = CameraConfig.imageShape(config)
    const depthShape = CameraConfig.depthShape(config)
    const ref = yield* Ref.make<CameraFrame>({
      name: config.name,
      timestamp: 0,
      intrinsics: config.intrinsics.slice(),
      extrinsics: config.extrinsics.slice(),
      image: Tensor.zeros(config.imageDtype, imageShape),
      depth: config.hasDepth ? Tensor.zeros(config.depthDtype, depthShape) : null
    })
    const fail = (field: SensorError["field"], reason: string) =>
      Effect.fail(new SensorError({ sensor: config.name, field, reason }))

    const updateImage = (input: SensorInput, options?: WriteOptions) => {
      const image = toTensor(input, config.imageDtype, imageShape, options)
      if (typeof image === "string") return fail("image", image)
      return Effect.flatMap(captureTime, (timestamp) => Ref.update(ref, (frame) => ({ ...frame, image, timestamp })))
    }
    const updateDepth = (input: SensorInput, options?: WriteOptions) => {
      if (!config.hasDepth) return fail("depth", "camera is configured without depth")
      const depth = toTensor(input, config.depthDtype, depthShape, options)
      if (typeof depth === "string") return fail("depth", depth)
      return Ref.update(ref, (frame) => ({ ...frame, depth }))
    }
    const updateIntrinsics = (input: MatrixInput) => {
      const intrinsics = toRowMajor(input, 3)
      if (typeof intrinsics === "string") return fail("intrinsics", intrinsics)
      return Ref.update(ref, (frame) => ({ ...frame, intrinsics }))
    }
    const updateExtrinsics = (input: MatrixInput) => {
      const extrinsics = toRowMajor(input, 4)
      if (typeof extrinsics === "string") return fail("extrinsics", extrinsics)
      return Ref.update(ref, (frame) => ({ ...frame, extrinsics }))
    }
    return { config, ref, updateImage, updateDepth, updateIntrinsics, updateExtrinsics, snapshot: Ref.get(ref) }
  })
