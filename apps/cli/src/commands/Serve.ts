import { Console, Duration, Effect, Logger, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as SimulatedArm from "../SimulatedArm.js"
import * as SimulatedRobot from "../SimulatedRobot.js"
import * as Flags from "../Flags.js"
import * as RobotThread from "../RobotThread.js"
import { serverTransports } from "../Transports.js"
import { failWith } from "./Decode.js"

// ── flag values ───────────────────────────────────────────────────────────────

/** `joint_pos:7,joint_vel:7` → proprio specs (`""` → none), or why not. */
export const parseProprios = (text: string): ReadonlyArray<SimulatedRobot.ProprioSpec> | string => {
  if (text.trim() === "") return []
  const specs: Array<SimulatedRobot.ProprioSpec> = []
  for (const item of text.split(",")) {
    const match = /^\s*([^:\s]+)\s*:\s*(\d+)\s*$/.exec(item)
    if (match === null) return `--proprio ${JSON.stringify(item)}: expected name:size, e.g. joint_pos:7`
    const name = match[1]!
    if (specs.some((s) => s.name === name)) return `--proprio: ${name} is given twice`
    specs.push({ name, size: Number(match[2]) })
  }
  return specs
}

/** `0.5,-0.2,…` → D joint positions (rad), or why not. */
export const parseTarget = (text: string, joints: number): ReadonlyArray<number> | string => {
  const values = text.split(",").map((item) => item.trim())
  const numbers = values.map(Number)
  const bad = values.findIndex((item, i) => item === "" || !Number.isFinite(numbers[i]!))
  if (bad >= 0) return `--target ${JSON.stringify(text)}: ${JSON.stringify(values[bad])} is not a number (rad)`
  if (numbers.length !== joints) {
    return `--target ${text}: ${numbers.length} joint position${numbers.length === 1 ? "" : "s"}, the action has ${joints} (--action-dim)`
  }
  if (numbers.some((x) => Math.abs(x) > Math.PI)) return `--target ${text}: joint positions must be within ±π rad`
  return numbers
}

const positive = (flag: string, value: number): string | undefined =>
  Number.isFinite(value) && value > 0 ? undefined : `--${flag} ${value}: expected a number > 0`

/** A duration flag in seconds: undefined when not given, else the Duration or why not. */
const secondsFlag = (
  flag: string,
  value: Option.Option<number>,
  options: { readonly zero?: "off" | undefined } = {}
): Duration.Duration | "off" | undefined | { readonly error: string } => {
  if (Option.isNone(value)) return undefined
  const s = value.value
  if (s === 0 && options.zero === "off") return "off"
  if (!(s > 0) || !Number.isFinite(s) || s > 1e6) {
    return { error: `--${flag} ${s}: expected seconds, more than 0${options.zero === "off" ? " (0 turns it off)" : ""}` }
  }
  return Duration.millis(s * 1000)
}

const range = (flag: string, value: number, min: number, max: number): string | undefined =>
  Number.isInteger(value) && value >= min && value <= max
    ? undefined
    : `--${flag} ${value}: expected an integer from ${min} to ${max}`

/** The robot description printed when serving starts. */
const describeRobot = (options: {
  readonly cameras: number
  readonly width: number
  readonly height: number
  readonly depth: boolean
  readonly proprios: ReadonlyArray<SimulatedRobot.ProprioSpec>
  readonly actionDim: number
  readonly episodeSteps: number
  readonly fps: number
  readonly maxStep: number
  readonly task: SimulatedRobot.SimulatedRobotOptions["task"]
}) => {
  const cameras = `${options.cameras} camera${options.cameras === 1 ? "" : "s"} ${options.width}x${options.height} rgb uint8${
    options.depth ? " + float32 depth" : ""
  }`
  const proprios = options.proprios.length === 0
    ? "no proprios"
    : `proprios ${options.proprios.map((p) => `${p.name}[${p.size}]`).join(" ")}`
  const episode = options.episodeSteps === 0 ? "episodes never end" : `episode ${options.episodeSteps} steps`
  const task = options.task === undefined
    ? ""
    : `, task: reach [${options.task.target.join(", ")}] within ${options.task.tolerance} rad${
      options.task.truncateAfter ? `, truncated after ${options.task.truncateAfter} actions` : ""
    }`
  return `${cameras}, ${proprios}, action_shape [1, ${options.actionDim}], ${episode}, ${options.fps} Hz, joints move ≤ ${options.maxStep} rad per action${task}`
}

/** The safety settings in force, one line. */
const describeSafety = (
  safety: {
    readonly maxActionAge: Duration.Duration | undefined
    readonly unstampedActions: "accept" | "drop"
    readonly actionTimeout: Duration.Duration | undefined
    readonly singleController: boolean
    readonly coalesceActions: boolean
  },
  webSocket: { readonly token: string | undefined; readonly pingInterval: Duration.Duration | 0 | undefined; readonly pingTimeout: Duration.Duration | undefined },
  protocol: string
) => {
  const seconds = (d: Duration.Duration) => `${Duration.toMillis(d) / 1000} s`
  const parts = [
    "actions must be finite [action-dim] or [1, action-dim]",
    safety.maxActionAge === undefined
      ? "no max action age"
      : `max action age ${seconds(safety.maxActionAge)}${safety.unstampedActions === "drop" ? " (unstamped dropped)" : ""}`,
    safety.actionTimeout === undefined ? "no action watchdog" : `action watchdog ${seconds(safety.actionTimeout)}`,
    safety.singleController ? "single controller" : "any client may act",
    safety.coalesceActions ? "of actions arriving together only the newest applied" : "every action applied"
  ]
  if (protocol === "websocket") {
    parts.push(webSocket.token === undefined ? "no token" : "token required")
    const interval = webSocket.pingInterval
    parts.push(
      interval === 0
        ? "keepalive off"
        : `ping every ${interval === undefined ? "20 s" : seconds(interval)}, timeout ${webSocket.pingTimeout === undefined ? "20 s" : seconds(webSocket.pingTimeout)}`
    )
  }
  return parts.join(", ")
}

// ── command ───────────────────────────────────────────────────────────────────

const serveFlags = {
  host: Flags.host(),
  port: Flags.serverPort,
  cameras: Flags.cameras,
  size: Flags.size,
  depth: Flags.depth(SimulatedRobot.defaults.depth),
  proprio: Flag.String("proprio").pipe(
    Flag.withDescription("Proprio vectors as name:size,…, float32; \"\" for none (default joint_pos:7,joint_vel:7)"),
    Flag.withDefault(SimulatedRobot.defaults.proprios.map((p) => `${p.name}:${p.size}`).join(","))
  ),
  actionDim: Flag.Int("action-dim").pipe(
    Flag.withDescription(`D of the action_shape [1, D] the metadata advertises (default ${SimulatedRobot.defaults.actionDim})`),
    Flag.withDefault(SimulatedRobot.defaults.actionDim)
  ),
  episodeSteps: Flag.Int("episode-steps").pipe(
    Flag.withDescription(
      `Legacy steps (C++ \`action\` messages) after which a step reports terminated, until the next reset; 0 never (default ${SimulatedRobot.defaults.episodeSteps})`
    ),
    Flag.withDefault(SimulatedRobot.defaults.episodeSteps)
  ),
  fps: Flag.Int("fps").pipe(
    Flag.withDescription(`Sensor rate in Hz: new image, K/T and proprios; 0 one static frame (default ${SimulatedRobot.defaults.fps})`),
    Flag.withDefault(SimulatedRobot.defaults.fps)
  ),
  logActions: Flag.Boolean("log-actions").pipe(
    Flag.withDescription(
      "Print one JSON line per applied action on stdout: {\"action\":[…],\"obs_timestamps\":{…},\"applied_at\":s,\"connection\":\"…\"} (applied_at on the clock of the observation stamps, so applied_at minus the newest stamp is the action's age; NaN, Infinity, -Infinity as the strings \"NaN\", \"Infinity\", \"-Infinity\")"
    ),
    Flag.withDefault(false)
  ),
  maxStep: Flag.Finite("max-step").pipe(
    Flag.withDescription(
      `Joints follow the applied actions (absolute positions, rad), each by at most this per action, within ±π (default ${SimulatedArm.defaults.maxStep})`
    ),
    Flag.withDefault(SimulatedArm.defaults.maxStep)
  ),
  task: Flag.Boolean("task").pipe(
    Flag.withDescription(
      "A reach task: each reset starts the arm at a seeded configuration; the episode terminates (reward 1, info.success) once every joint is within --tolerance of --target. The status travels in every observation's extra: reward, terminated, truncated, info"
    ),
    Flag.withDefault(false)
  ),
  target: Flag.String("target").pipe(
    Flag.withDescription("The reach task's target, one joint position per action value, rad: 0.5,-0.3,… (implies --task; default all 0)"),
    Flag.optional
  ),
  tolerance: Flag.Finite("tolerance").pipe(
    Flag.withDescription(`Reach task: success when every joint is within this of the target, rad (default ${SimulatedArm.defaults.tolerance})`),
    Flag.withDefault(SimulatedArm.defaults.tolerance)
  ),
  truncateAfter: Flag.Int("truncate-after").pipe(
    Flag.withDescription("Reach task: an episode not done after this many applied actions is truncated; 0 never (default 0)"),
    Flag.withDefault(0)
  ),
  seed: Flag.Int("seed").pipe(
    Flag.withDescription(`Reach task: seed of the start configurations, so episode k always starts at the same place (default ${SimulatedArm.defaults.seed})`),
    Flag.withDefault(SimulatedArm.defaults.seed)
  ),
  protocol: Flags.serverProtocol(),
  keyPrefix: Flags.keyPrefix("the robot's", { why: Flags.sharedNetwork }),
  maxActionAge: Flag.Finite("max-action-age").pipe(
    Flag.withDescription(
      "Drop every action whose newest obs timestamp is older than S seconds on arrival (stale-action guard; counted, logged once per burst). Default: no limit"
    ),
    Flag.withMetavar("S"),
    Flag.optional
  ),
  dropUnstamped: Flag.Boolean("drop-unstamped").pipe(
    Flag.withDescription(
      "With --max-action-age: also drop actions that carry no obs timestamps ({}), whose age cannot be known (default: accepted)"
    ),
    Flag.withDefault(false)
  ),
  actionTimeout: Flag.Finite("action-timeout").pipe(
    Flag.withDescription(
      "Watchdog: once actions have been arriving, log a warning (where a real robot would hold position) when none arrives for S seconds. Default: off"
    ),
    Flag.withMetavar("S"),
    Flag.optional
  ),
  singleController: Flag.Boolean("single-controller").pipe(
    Flag.withDescription(
      "One controlling client at a time: the first client whose action is accepted keeps control until it disconnects (or, with --action-timeout, stops acting that long); other clients' actions and resets are refused (counted, logged; a refused reset closes that client's connection), their observations still served"
    ),
    Flag.withDefault(false)
  ),
  applyEveryAction: Flag.Boolean("apply-every-action").pipe(
    Flag.withDescription(
      "Apply every action as it is read, as the reference servers do. Default: of several actions from one client that arrive together (the server was stopped, blocked or busy), only the newest is applied and the older ones are dropped as superseded (counted, logged)"
    ),
    Flag.withDefault(false)
  ),
  token: Flags.token(),
  pingInterval: Flag.Finite("ping-interval").pipe(
    Flag.withDescription("WebSocket only: ping every client every S seconds; 0 turns keepalive off (default 20, as the references)"),
    Flag.withMetavar("S"),
    Flag.optional
  ),
  pingTimeout: Flag.Finite("ping-timeout").pipe(
    Flag.withDescription(
      "WebSocket only: close a client that stays silent (no pong, no message) for S seconds after a ping (default 20, as the references)"
    ),
    Flag.withMetavar("S"),
    Flag.optional
  ),
  maxMessageSize: Flags.serverMaxMessageSize,
  priority: Flags.robotPriority()
}

/** The settings the flags give; a flag that is wrong fails the command, saying why. */
const settingsOf = (flags: Command.Command.Config.Infer<typeof serveFlags>) =>
  Effect.gen(function*() {
    const size = Flags.parseSize(flags.size)
    if (typeof size === "string") return yield* failWith("serve", size)
    const proprios = parseProprios(flags.proprio)
    if (typeof proprios === "string") return yield* failWith("serve", proprios)
    const port = Option.getOrUndefined(flags.port)
    const keyPrefix = Option.getOrUndefined(flags.keyPrefix)
    const maxMessageBytes = Flags.maxMessageBytesOf(flags.maxMessageSize)
    if (typeof maxMessageBytes === "string") return yield* failWith("serve", maxMessageBytes)
    if (keyPrefix !== undefined && flags.protocol !== "zenoh") return yield* failWith("serve", "--key-prefix applies to --protocol zenoh only")
    const bad = (port === undefined ? undefined : range("port", port, 0, 65535)) ?? range("cameras", flags.cameras, 0, 256) ??
      range("action-dim", flags.actionDim, 1, 1 << 20) ?? range("episode-steps", flags.episodeSteps, 0, 2 ** 31) ??
      range("fps", flags.fps, 0, 1000) ?? positive("max-step", flags.maxStep) ?? positive("tolerance", flags.tolerance) ??
      range("truncate-after", flags.truncateAfter, 0, 2 ** 31) ?? range("seed", flags.seed, 0, 2 ** 31)
    if (bad !== undefined) return yield* failWith("serve", bad)
    const targetText = Option.getOrUndefined(flags.target)
    const target = targetText === undefined
      ? new Array<number>(flags.actionDim).fill(0)
      : parseTarget(targetText, flags.actionDim)
    if (typeof target === "string") return yield* failWith("serve", target)
    const task = flags.task || targetText !== undefined
      ? { target, tolerance: flags.tolerance, truncateAfter: flags.truncateAfter, seed: flags.seed }
      : undefined
    const maxActionAge = secondsFlag("max-action-age", flags.maxActionAge)
    const actionTimeout = secondsFlag("action-timeout", flags.actionTimeout)
    const pingInterval = secondsFlag("ping-interval", flags.pingInterval, { zero: "off" })
    const pingTimeout = secondsFlag("ping-timeout", flags.pingTimeout)
    for (const value of [maxActionAge, actionTimeout, pingInterval, pingTimeout]) {
      if (typeof value === "object" && "error" in value) return yield* failWith("serve", value.error)
    }
    const resolved = yield* Flags.tokenOf(flags.token, flags.protocol)
    if ("error" in resolved) return yield* failWith("serve", resolved.error)
    const token = resolved.token
    if (flags.protocol === "zenoh") {
      const webSocketOnly = [
        pingInterval === undefined ? undefined : "--ping-interval applies to --protocol websocket only",
        pingTimeout === undefined ? undefined : "--ping-timeout applies to --protocol websocket only"
      ].find((f) => f !== undefined)
      if (webSocketOnly !== undefined) return yield* failWith("serve", webSocketOnly)
    }
    if (flags.dropUnstamped && maxActionAge === undefined) {
      return yield* failWith("serve", "--drop-unstamped applies with --max-action-age only")
    }
    const duration = (value: typeof maxActionAge) => (value === undefined || value === "off" || "error" in value ? undefined : value)
    const safety = {
      maxActionAge: duration(maxActionAge),
      unstampedActions: flags.dropUnstamped ? "drop" as const : "accept" as const,
      actionTimeout: duration(actionTimeout),
      singleController: flags.singleController,
      coalesceActions: !flags.applyEveryAction
    }
    const webSocket = {
      token,
      pingInterval: pingInterval === "off" ? 0 as const : duration(pingInterval),
      pingTimeout: duration(pingTimeout)
    }
    return { size, proprios, port, keyPrefix, maxMessageBytes, task, safety, webSocket }
  })

export const serve = Command.make(
  "serve",
  serveFlags,
  Effect.fnUntraced(function*(flags) {
    const { keyPrefix, maxMessageBytes, port, proprios, safety, size, task, webSocket } = yield* settingsOf(flags)
    const options = {
      cameras: flags.cameras,
      width: size.width,
      height: size.height,
      depth: flags.depth,
      proprios,
      actionDim: flags.actionDim,
      episodeSteps: flags.episodeSteps,
      fps: flags.fps,
      maxStep: flags.maxStep,
      task
    }
    yield* Effect.gen(function*() {
      // Before the robot's buffers exist: chrt forks this process, and a fork copies its page tables.
      const priority = Option.getOrElse(flags.priority, () => "normal" as const)
      if (priority !== "normal") {
        yield* Console.error(`chiral serve: the robot's main thread, where actions reach the arm, runs ${RobotThread.raise(priority)}`)
      }
      const robot = yield* SimulatedRobot.make({ ...options, logActions: flags.logActions, safety })
      // stderr: stdout is reserved for the action log.
      yield* Console.error(`chiral serve: listening on ${robot.server.address} (${describeRobot(options)})`)
      yield* Console.error(`chiral serve: robot safety: ${describeSafety(safety, webSocket, flags.protocol)}`)
      return yield* Effect.never
    }).pipe(
      Effect.scoped,
      Effect.provide(serverTransports[flags.protocol]({ host: flags.host, port, keyPrefix, webSocket, maxMessageBytes })),
      Effect.catchTags({
        TransportError: (error) => failWith("serve", `cannot listen: ${error.message}`),
        ConfigError: (error) => failWith("serve", error.message)
      })
    )
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Serve a simulated robot: cameras with deterministic synthetic images (optionally depth), extrinsics that move every frame, proprio vectors, an arm whose joints follow the applied actions (joint_pos, joint_vel), optionally a reach task to evaluate policies on (--task). Answers metadata, reset, obs_request, apply_action and the legacy C++ action step (terminated after --episode-steps steps, or when the task is reached). Runs until Ctrl-C."
  ),
  Command.withExamples([
    { command: "chiral serve", description: "8 cameras 640x480 on ws://0.0.0.0:8765" },
    {
      command: "chiral serve --host 127.0.0.1 --port 9000 --cameras 2 --size 320x240 --depth",
      description: "A smaller robot with depth, on this machine only"
    },
    { command: "chiral serve --log-actions > actions.jsonl", description: "Record every applied action" },
    {
      command: "chiral serve --cameras 1 --size 64x48 --task --tolerance 0.02 --truncate-after 300",
      description: "A robot to evaluate a policy on: reach joint positions 0 from a seeded start, within 0.02 rad, in 300 actions"
    },
    {
      command: "CHIRAL_TOKEN=s3cret chiral serve --max-action-age 1 --action-timeout 0.2 --single-controller",
      description: "Robot-safe: clients need ws://host:8765/?token=s3cret, actions whose observation is older than 1 s are dropped (choose it above your longest open-loop plan plus inference), one client drives, a 0.2 s gap is reported"
    },
    { command: "chiral serve --protocol zenoh", description: "The same robot as a Zenoh peer on tcp/0.0.0.0:7447" },
    {
      command: "chiral serve --priority realtime",
      description: "On a machine shared with the policy (as root, or with CAP_SYS_NICE or ulimit -r 1): the robot's thread runs ahead of ordinary threads (SCHED_FIFO 1), so actions wait less for a core"
    }
  ])
)
