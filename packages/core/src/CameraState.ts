/**
 * One camera's live state (image, depth, K, T, capture time) in its own Ref.
 *
 * The Ref holds an immutable snapshot that every update replaces whole, so a
 * reader always sees one consistent camera, writers of different cameras never
 * contend, and taking a snapshot copies nothing: the bytes were copied once,
 * when they were written. Frames handed out by `snapshot` share those buffers
 * and must be treated as read-only.
 *
 * Image and depth copies go into recycled buffers where that is provably safe
 * (`SensorBuffers`): a frame handed out by `snapshot` is never recycled, one
 * handed out by `lease` only once its lease has ended.
 */
import type { CameraFrame } from "@chiral/protocol"
import { Dtype, Tensor } from "@chiral/protocol"
import { Clock, Effect, Exit, Ref, type Scope } from "effect"
import * as CameraConfig from "./CameraConfig.js"
import { type MatrixInput, toRowMajor } from "./Matrix.js"
import { type SensorInput, toTensor, type WriteOptions } from "./SensorData.js"
import { SensorBuffers } from "./SensorBuffers.js"
import { SensorError } from "./SensorError.js"

/**
 * A camera's new frame, written in one step by `updateCamera`: any of the
 * image, depth, K (3×3) and T (4×4, camera to world); what is not given stays.
 */
export interface CameraUpdate {
  readonly image?: SensorInput | undefined
  readonly depth?: SensorInput | undefined
  readonly intrinsics?: MatrixInput | undefined
  readonly extrinsics?: MatrixInput | undefined
}

export interface CameraState {
  readonly config: CameraConfig.CameraConfig
  /** Replaces the image and stamps the capture time (see `captureTime`). */
  readonly updateImage: (image: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly updateDepth: (depth: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly updateIntrinsics: (k: MatrixInput) => Effect.Effect<void, SensorError>
  readonly updateExtrinsics: (t: MatrixInput) => Effect.Effect<void, SensorError>
  /** Several fields in one step (see `SensorState.updateCamera`). */
  readonly updateCamera: (update: CameraUpdate, options?: WriteOptions) => Effect.Effect<void, SensorError>
  /** The camera as it is now (one consistent frame); its buffers are never recycled. */
  readonly snapshot: Effect.Effect<CameraFrame>
  /**
   * The camera as it is now, its image and depth buffers lent until the scope
   * closes (then they may be recycled for a later frame): for readers that are
   * done with the frame when their scope ends, e.g. a reply once it is sent.
   */
  readonly lease: Effect.Effect<CameraFrame, never, Scope.Scope>
  /** `snapshot`, for a caller already inside an effect (`SensorState.makeObs`). */
  readonly snapshotUnsafe: () => CameraFrame
  /**
   * `lease` without the scope: the frame, and the release to call when done
   * with it (later calls do nothing); `mayStillBeRead` (a send interrupted
   * mid-way) keeps its buffers from ever being recycled.
   */
  readonly leaseUnsafe: () => { readonly frame: CameraFrame; readonly release: (mayStillBeRead?: boolean) => void }
  /** When this camera's first image was written (s, capture clock); undefined before. */
  readonly firstFrameAt: () => number | undefined
}

/**
 * Capture time in seconds on the monotonic clock of Effect's `Clock`. With the
 * live clock on Node that is `process.hrtime` — CLOCK_MONOTONIC, the base of
 * Python's `time.monotonic()` and C++'s `steady_clock` on Linux — so stamps
 * from TS, Python and C++ processes on one machine compare directly. Under
 * `TestClock` it is virtual time.
 */
export const captureTime: Effect.Effect<number> = Effect.map(Clock.monotonicTimeNanos, (ns) => Number(ns) / 1e9)

/** `captureTime` read from a `Clock` directly (s). */
export const captureTimeOf = (clock: Clock.Clock): number => Number(clock.monotonicTimeNanosUnsafe()) / 1e9

export const make = (config: CameraConfig.CameraConfig): Effect.Effect<CameraState> =>
  Effect.gen(function*() {
    const imageShape = CameraConfig.imageShape(config)
    const depthShape = CameraConfig.depthShape(config)
    const initial: CameraFrame = {
      name: config.name,
      timestamp: 0,
      intrinsics: config.intrinsics.slice(),
      extrinsics: config.extrinsics.slice(),
      image: Tensor.zeros(config.imageDtype, imageShape),
      depth: config.hasDepth ? Tensor.zeros(config.depthDtype, depthShape) : null
    }
    const ref = yield* Ref.make<CameraFrame>(initial)
    let firstFrameAt: number | undefined
    const images = new SensorBuffers(initial.image.data, true)
    const depths = initial.depth === null ? undefined : new SensorBuffers(initial.depth.data, true)
    const newImage = images.target((n) => new (Dtype.arrayConstructor(config.imageDtype))(n))
    const newDepth = depths?.target((n) => new (Dtype.arrayConstructor(config.depthDtype))(n))
    const fail = (field: SensorError["field"], reason: string) =>
      Effect.fail(new SensorError({ sensor: config.name, field, reason }))

    // Every update goes through here: all given fields are checked before
    // anything is written (a failure changes nothing), then the frame and its
    // buffers' bookkeeping change in one step (a lease taken in between would
    // lend the wrong buffer). Only an image reads the clock: it stamps the frame.
    const updateCamera = (update: CameraUpdate, options?: WriteOptions): Effect.Effect<void, SensorError> => {
      const intrinsics = update.intrinsics === undefined ? undefined : toRowMajor(update.intrinsics, 3)
      if (typeof intrinsics === "string") return fail("intrinsics", intrinsics)
      const extrinsics = update.extrinsics === undefined ? undefined : toRowMajor(update.extrinsics, 4)
      if (typeof extrinsics === "string") return fail("extrinsics", extrinsics)
      if (update.depth !== undefined && !config.hasDepth) return fail("depth", "camera is configured without depth")
      const depth = update.depth === undefined
        ? undefined
        : toTensor(update.depth, config.depthDtype, depthShape, options, newDepth)
      if (typeof depth === "string") return fail("depth", depth)
      const image = update.image === undefined
        ? undefined
        : toTensor(update.image, config.imageDtype, imageShape, options, newImage)
      if (typeof image === "string") return fail("image", image)
      const owned = options?.copy !== false
      const write = (timestamp: number | undefined) =>
        Ref.update(ref, (frame) => {
          if (timestamp !== undefined) firstFrameAt ??= timestamp
          if (image !== undefined) images.install(image.data, owned)
          if (depth !== undefined) depths!.install(depth.data, owned)
          return {
            ...frame,
            ...(image === undefined ? {} : { image, timestamp: timestamp! }),
            ...(depth === undefined ? {} : { depth }),
            ...(intrinsics === undefined ? {} : { intrinsics }),
            ...(extrinsics === undefined ? {} : { extrinsics })
          }
        })
      return image === undefined ? write(undefined) : Effect.flatMap(captureTime, write)
    }
    const updateImage = (image: SensorInput, options?: WriteOptions) => updateCamera({ image }, options)
    const updateDepth = (depth: SensorInput, options?: WriteOptions) => updateCamera({ depth }, options)
    const updateIntrinsics = (intrinsics: MatrixInput) => updateCamera({ intrinsics })
    const updateExtrinsics = (extrinsics: MatrixInput) => updateCamera({ extrinsics })
    const snapshotUnsafe = (): CameraFrame => {
      images.escape()
      depths?.escape()
      return Ref.getUnsafe(ref)
    }
    const leaseUnsafe = () => {
      const frame = Ref.getUnsafe(ref)
      const endImage = images.lease()
      const endDepth = depths?.lease()
      return {
        frame,
        release: (mayStillBeRead?: boolean) => {
          endImage(mayStillBeRead)
          endDepth?.(mayStillBeRead)
        }
      }
    }
    const snapshot = Effect.sync(snapshotUnsafe)
    const lease = Effect.map(
      Effect.acquireRelease(
        Effect.sync(leaseUnsafe),
        // Ended by an interruption, the reply's send may not have finished with the bytes.
        ({ release }, exit) => Effect.sync(() => release(Exit.hasInterrupts(exit)))
      ),
      ({ frame }) => frame
    )
    return {
      config,
      updateImage,
      updateDepth,
      updateIntrinsics,
      updateExtrinsics,
      updateCamera,
      snapshot,
      lease,
      snapshotUnsafe,
      leaseUnsafe,
      firstFrameAt: () => firstFrameAt
    }
  })
