/**
 * A simulated robot on PolicyServer, for `chiral serve` and `chiral bench`:
 * cameras with deterministic synthetic images (and optional depth), extrinsics
 * that move every frame as a wrist camera's do, proprio vectors, an arm whose
 * joints follow the applied actions (`SimulatedArm`: `joint_pos` and
 * `joint_vel` report it), an optional reach task whose status travels in each
 * observation's `extra`, and handlers for every message type, the legacy
 * `action` step included.
 *
 * Producing a 17 MB observation 30 times a second must not cost the CPU that
 * serving it needs, so each camera's frames are computed once, a short cycle
 * of them, and every tick hands the next one to the server without a copy
 * (`copy: false`; those buffers are never written again). What changes per
 * tick is the capture time, K/T and the proprios: a few hundred bytes.
 */
import {
  type ActionContext,
  ActionSpec,
  Cadence,
  CameraState,
  type ConfigError,
  type Handlers,
  PolicyServer,
  type SensorError,
  type ServerTransport
} from "@chiral/core"
import { type ObsTimestamps, stringifyJson, Tensor } from "@chiral/protocol"
import { Console, Duration, Effect, Layer, Ref, type Scope } from "effect"
import { type ReachTaskOptions, SimulatedArm, type Status } from "./SimulatedArm.js"

export interface ProprioSpec {
  readonly name: string
  readonly size: number
}

export interface SimulatedRobotOptions {
  /** Number of cameras `cam_0…`. Default 8. */
  readonly cameras?: number | undefined
  /** Image width. Default 640. */
  readonly width?: number | undefined
  /** Image height. Default 480. */
  readonly height?: number | undefined
  /** Give every camera a float32 depth image (metres). Default false. */
  readonly depth?: boolean | undefined
  /** Proprio vectors (float32). Default joint_pos:7, joint_vel:7. */
  readonly proprios?: ReadonlyArray<ProprioSpec> | undefined
  /** D of the advertised `action_shape` [1, D]. Default 7. */
  readonly actionDim?: number | undefined
  /** Legacy steps after which `terminated` is true (until the next reset); 0 = never. Default 200. */
  readonly episodeSteps?: number | undefined
  /** Sensor rate in Hz; 0 writes one frame and keeps it. Default 30. */
  readonly fps?: number | undefined
  /**
   * Print one JSON line per applied action: `{"action":[…],"obs_timestamps":{…}}`
   * (see {@link actionLogLines}: NaN/±Infinity as "NaN", "Infinity", "-Infinity"). Default false.
   */
  readonly logActions?: boolean | undefined
  /**
   * Called with each action (`apply_action`, or a legacy step's chunk) as it
   * reaches the robot's handler, before the arm moves: where `chiral bench`
   * stamps an action's arrival. Must not throw.
   */
  readonly onAction?: ((action: Tensor) => void) | undefined
  /** Largest move of a joint per applied action (rad). Default 0.05. */
  readonly maxStep?: number | undefined
  /** The reach task (see `SimulatedArm`); none by default. */
  readonly task?: ReachTaskOptions | undefined
  /**
   * The server's robot-safety options (stale-action guard, single controller,
   * watchdog, coalescing). Actions are always validated against `[N, actionDim]`, finite.
   */
  readonly safety?:
    | Omit<PolicyServer.ActionGateConfig, "actionSpec"> & Pick<PolicyServer.PolicyServerConfig, "coalesceActions">
    | undefined
}

export const defaults = {
  cameras: 8,
  width: 640,
  height: 480,
  depth: false,
  proprios: [{ name: "joint_pos", size: 7 }, { name: "joint_vel", size: 7 }] as ReadonlyArray<ProprioSpec>,
  actionDim: 7,
  episodeSteps: 200,
  fps: 30
} as const

/** Distinct synthetic frames per camera; the sensor cycles through them. */
export const framesPerCycle = 4

export interface SimulatedRobot {
  readonly server: PolicyServer.PolicyServerApi
  /** The metadata every `metadata` request is answered with. */
  readonly metadata: { readonly cameras: ReadonlyArray<string>; readonly action_shape: readonly [1, number] }
  /** Action rows applied so far (`apply_action` and legacy steps). */
  readonly actionsApplied: Effect.Effect<number>
  /** Legacy steps taken since the last reset. */
  readonly episodeStep: Effect.Effect<number>
  /** The arm's joint positions (rad). */
  readonly jointPositions: Effect.Effect<ReadonlyArray<number>>
  /** The episode's status (what observations carry in `extra` when there is a task). */
  readonly status: Effect.Effect<Status>
}

export const cameraName = (index: number): string => `cam_${index}`

/**
 * The RGB image of camera `camera` at `phase`: diagonal stripes that move with
 * the phase, tinted per camera, so every camera and frame is recognisable.
 */
export const syntheticImage = (camera: number, phase: number, width: number, height: number): Uint8Array => {
  const image = new Uint8Array(width * height * 3)
  // One row of the pattern, long enough for every row's diagonal offset.
  const span = width + height
  const row = new Uint8Array(span * 3)
  for (let i = 0; i < span; i++) {
    const v = (i * 2 + phase * 16 + camera * 32) & 255
    row[i * 3] = v
    row[i * 3 + 1] = (v + 85 + camera * 40) & 255
    row[i * 3 + 2] = (v + 170) & 255
  }
  for (let y = 0; y < height; y++) image.set(row.subarray(y * 3, (y + width) * 3), y * width * 3)
  return image
}

/** Depth in metres: a plane tilting away from the camera, moving with the phase. */
export const syntheticDepth = (camera: number, phase: number, width: number, height: number): Float32Array => {
  const depth = new Float32Array(width * height)
  const base = 1 + 0.25 * camera + 0.05 * phase
  for (let y = 0; y < height; y++) {
    const value = base + y / height
    depth.fill(value, y * width, (y + 1) * width)
  }
  return depth
}

/** K for a pinhole camera of this size (600 px focal length at 640 px wide, as the references use). */
export const intrinsicsFor = (width: number, height: number): ReadonlyArray<number> => {
  const f = (600 * width) / 640
  return [f, 0, width / 2, 0, f, height / 2, 0, 0, 1]
}

/** Camera-to-world T of camera `camera` at `frame`: a wrist camera swaying on a circle. */
export const extrinsicsAt = (camera: number, frame: number, fps: number): ReadonlyArray<number> => {
  const t = frame / (fps > 0 ? fps : defaults.fps)
  return [1, 0, 0, 0.1 * Math.sin(t), 0, 1, 0, 0.05 * camera + 0.1 * Math.cos(t) - 0.1, 0, 0, 1, 0.3, 0, 0, 0, 1]
}

/** `values` as a float32 vector of `size` (cut or padded with zeros). */
const vectorOf = (values: ReadonlyArray<number>, size: number): Float32Array => {
  const out = new Float32Array(size)
  for (let i = 0; i < Math.min(size, values.length); i++) out[i] = values[i]!
  return out
}

/** Proprio `index` at `frame`: element i is sin(t + i + index). */
const proprioAt = (index: number, size: number, frame: number, fps: number): Float32Array => {
  const t = frame / (fps > 0 ? fps : defaults.fps)
  const values = new Float32Array(size)
  for (let i = 0; i < size; i++) values[i] = Math.sin(t + i + index)
  return values
}

/**
 * The shortest decimal that reads back as the same float32 (0.1, not
 * 0.10000000149011612), as the double that prints so; NaN, ±Infinity and -0
 * as they are.
 */
const shortFloat32 = (x: number): number => {
  if (!Number.isFinite(x) || x === 0) return x
  for (let digits = 1; digits < 9; digits++) {
    const short = Number(x.toPrecision(digits))
    if (Math.fround(short) === x) return short
  }
  return x
}

/**
 * One JSON line per action row: a [D] action is one row, an [N, D] chunk N
 * rows, each with the observation timestamps it arrived with, when it was
 * applied and from which connection (`AppliedBy`):
 * `{"action":[…],"obs_timestamps":{…},"applied_at":1234.567891,"connection":"ws://… ← 127.0.0.1:50124"}`.
 * float32 and float16 values in their
 * shortest form, 64-bit integers exact, bool as booleans; written by
 * stringifyJson, so NaN, +Infinity and -Infinity are the strings "NaN",
 * "Infinity", "-Infinity" and -0 is -0.0 (every line parses as JSON, and an
 * action a robot must not apply is visible as what it is).
 */
export const actionLogLines = (action: Tensor, obsTimestamps: ObsTimestamps, applied: AppliedBy): Array<string> => {
  const shorten = action.dtype === "float32" || action.dtype === "float16"
  const values = Tensor.toArray(action).map((v) => (shorten ? shortFloat32(v as number) : v))
  const rows = ActionSpec.rowsOf(action)
  const width = rows === 0 ? 0 : values.length / rows
  const appliedAt = Math.round(applied.at * 1e6) / 1e6
  return Array.from(
    { length: rows },
    (_, r) =>
      stringifyJson({
        action: values.slice(r * width, (r + 1) * width),
        obs_timestamps: obsTimestamps,
        applied_at: appliedAt,
        connection: applied.connection
      })
  )
}

/**
 * When and from whom an action was applied: `at` on the capture clock (s,
 * `CameraState.captureTime`: the clock of the observation stamps, so
 * `applied_at` minus the newest stamp is the action's age), `connection` the
 * client's connection id (`ws://… ← host:port`).
 */
export interface AppliedBy {
  readonly at: number
  readonly connection: string
}

/** The options with their defaults filled in. */
const settingsOf = (options: SimulatedRobotOptions) => ({
  cameras: options.cameras ?? defaults.cameras,
  width: options.width ?? defaults.width,
  height: options.height ?? defaults.height,
  hasDepth: options.depth ?? defaults.depth,
  proprios: options.proprios ?? defaults.proprios,
  actionDim: options.actionDim ?? defaults.actionDim,
  episodeSteps: options.episodeSteps ?? defaults.episodeSteps,
  fps: options.fps ?? defaults.fps,
  logActions: options.logActions ?? false,
  onAction: options.onAction
})

type Settings = ReturnType<typeof settingsOf>

/** The arm's state in its proprios: `joint_pos` (rad) and `joint_vel` (rad per action). */
const writeArm = (
  robot: PolicyServer.PolicyServerApi,
  arm: SimulatedArm,
  proprios: ReadonlyArray<ProprioSpec>
): Effect.Effect<void> =>
  Effect.suspend(() => {
    let written: Effect.Effect<void, SensorError> = Effect.void
    for (const p of proprios) {
      const values = p.name === "joint_pos" ? arm.positions : p.name === "joint_vel" ? arm.moved : undefined
      if (values !== undefined) written = Effect.andThen(written, robot.updateProprio(p.name, vectorOf(values, p.size)))
    }
    return Effect.orDie(written)
  })

/** What the robot counts: action rows applied, and legacy steps since the last reset. */
interface Counters {
  readonly applied: Ref.Ref<number>
  readonly steps: Ref.Ref<number>
}

/**
 * The handlers of every message type: actions move the arm (and are printed
 * if asked), `reset` and the legacy `step` also report the episode.
 */
const handlersFor = (
  settings: Settings,
  arm: SimulatedArm,
  counters: Counters,
  metadata: SimulatedRobot["metadata"]
): Handlers<never, PolicyServer.PolicyServer> => {
  const { episodeSteps, logActions, onAction, proprios } = settings
  // Without a task, observations carry no status (as before there was one).
  const extra = () => (arm.hasTask ? { ...arm.status() } : {})

  // Plain code between as few effects as it takes: an action arrives at robot
  // rates, and each effect step on its way runs cold (see `ServerConnection`).
  const record = (action: Tensor, context: ActionContext) =>
    PolicyServer.PolicyServer.use((robot) => {
      onAction?.(action)
      const values = Tensor.toArray(action).map(Number)
      const rows = ActionSpec.rowsOf(action)
      const width = rows === 0 ? 0 : values.length / rows
      for (let r = 0; r < rows; r++) arm.apply(values.slice(r * width, (r + 1) * width))
      const recorded = Effect.andThen(writeArm(robot, arm, proprios), Ref.update(counters.applied, (n) => n + rows))
      return logActions
        ? Effect.andThen(
          recorded,
          Effect.flatMap(CameraState.captureTime, (at) =>
            Effect.forEach(
              actionLogLines(action, context.obsTimestamps, { at, connection: context.connection }),
              (line) => Console.log(line)
            ))
        )
        : recorded
    })

  return {
    getMetadata: Effect.succeed(metadata),
    reset: Effect.gen(function*() {
      yield* Ref.set(counters.steps, 0)
      arm.reset()
      const robot = yield* PolicyServer.PolicyServer
      yield* writeArm(robot, arm, proprios)
      return { obs: yield* robot.makeObs({ extra: extra() }), info: arm.hasTask ? arm.status().info : {} }
    }),
    // Without a task the server's own getObs serves: the same observation,
    // built without a handler's effects on each request's path.
    getObs: arm.hasTask ? Effect.suspend(() => PolicyServer.makeObs({ extra: extra() })) : undefined,
    applyAction: (action, context) => record(action, context),
    step: (action, context) =>
      Effect.gen(function*() {
        yield* record(action, context)
        const taken = yield* Ref.updateAndGet(counters.steps, (n) => n + 1)
        const robot = yield* PolicyServer.PolicyServer
        const obs = yield* robot.makeObs({ extra: extra() })
        const status = arm.status()
        return {
          obs,
          reward: status.reward,
          terminated: status.terminated || (episodeSteps > 0 && taken >= episodeSteps),
          truncated: status.truncated,
          info: arm.hasTask ? status.info : {}
        }
      })
  }
}

/**
 * The synthetic sensors' writer: frame `frame` of every camera (frames
 * computed once, cycled through), then the proprios that are not the arm's.
 */
const syntheticSensors = (server: PolicyServer.PolicyServerApi, settings: Settings, names: ReadonlyArray<string>) => {
  const { fps, hasDepth, height, proprios, width } = settings
  const images = names.map((_, c) =>
    Array.from({ length: framesPerCycle }, (_, p) => syntheticImage(c, p, width, height))
  )
  const depths = hasDepth
    ? names.map((_, c) => Array.from({ length: framesPerCycle }, (_, p) => syntheticDepth(c, p, width, height)))
    : undefined
  // joint_pos and joint_vel are the arm's (written as it moves); the others are synthetic.
  const synthetic = proprios.flatMap((p, i) => p.name === "joint_pos" || p.name === "joint_vel" ? [] : [{ ...p, i }])

  // One step per camera: image, depth and pose of one instant together (it stamps the capture time).
  const writeCamera = (c: number, frame: number): Effect.Effect<void, SensorError> => {
    const phase = frame % framesPerCycle
    return server.updateCamera(names[c]!, {
      image: images[c]![phase]!,
      depth: depths?.[c]![phase],
      extrinsics: extrinsicsAt(c, frame, fps)
    }, { copy: false })
  }

  const write = (frame: number): Effect.Effect<void, SensorError> =>
    Effect.andThen(
      Effect.forEach(names, (_, c) => writeCamera(c, frame), { discard: true }),
      Effect.forEach(synthetic, (p) => server.updateProprio(p.name, proprioAt(p.i, p.size, frame, fps), { copy: false }), {
        discard: true
      })
    )

  return { write }
}

/**
 * Writes frames 1, 2, … of every sensor at `fps` in the scope, on a fixed
 * grid like a sensor driver: every camera and proprio in one tick, as the
 * Python reference's example robots do, so the event loop wakes once per
 * frame, not once per camera (each wake-up costs the server a few tenths of a
 * millisecond, which a request arriving at that moment waits for).
 */
const driveSensors = (sensors: ReturnType<typeof syntheticSensors>, fps: number) =>
  Effect.gen(function*() {
    const period = Duration.millis(1000 / fps)
    let frame = 0
    const tick = Effect.orDie(Effect.suspend(() => sensors.write(++frame)))
    yield* Effect.sleep(period).pipe(
      Effect.andThen(Effect.repeat(tick, Cadence.fixed(period))),
      Effect.forkScoped
    )
  })

/**
 * Builds the robot and serves through the `ServerTransport`; its sensor
 * fibers live in the scope, so closing it stops everything.
 */
export const make = (
  options: SimulatedRobotOptions = {}
): Effect.Effect<SimulatedRobot, ConfigError, Scope.Scope | ServerTransport> =>
  Effect.gen(function*() {
    const settings = settingsOf(options)
    const { actionDim, height, width } = settings
    const names = Array.from({ length: settings.cameras }, (_, i) => cameraName(i))
    const metadata = { cameras: names, action_shape: [1, actionDim] as const }
    const counters: Counters = { applied: yield* Ref.make(0), steps: yield* Ref.make(0) }
    const arm = new SimulatedArm({ joints: actionDim, maxStep: options.maxStep, task: options.task })

    const server = yield* PolicyServer.make({
      ...options.safety,
      // as its metadata says: action_shape [1, D]
      actionSpec: { dim: actionDim, maxRows: 1 },
      cameras: names.map((name) => ({
        name,
        width,
        height,
        hasDepth: settings.hasDepth,
        intrinsics: intrinsicsFor(width, height)
      })),
      proprios: settings.proprios,
      handlers: handlersFor(settings, arm, counters, metadata)
    })

    const sensors = syntheticSensors(server, settings, names)
    // Every sensor has its first frame before any client can ask for one.
    // (Sizes and dtypes match the configs by construction: a SensorError here is a bug.)
    yield* Effect.orDie(sensors.write(0))
    yield* writeArm(server, arm, settings.proprios)
    if (settings.fps > 0) yield* driveSensors(sensors, settings.fps)

    return {
      server,
      metadata,
      actionsApplied: Ref.get(counters.applied),
      episodeStep: Ref.get(counters.steps),
      jointPositions: Effect.sync(() => arm.positions),
      status: Effect.sync(() => arm.status())
    } satisfies SimulatedRobot
  })

/** The simulated robot as a `PolicyServer` layer: serves from when it is built until released. */
export const layer = (
  options: SimulatedRobotOptions = {}
): Layer.Layer<PolicyServer.PolicyServer, ConfigError, ServerTransport> =>
  Layer.effect(PolicyServer.PolicyServer, Effect.map(make(options), (robot) => robot.server))
