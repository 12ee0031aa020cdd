import { ActionSpec, describeUnresolved, PolicyClient, type RequestError, type TransportError } from "@chiral/core"
import {
  type CameraFrame,
  describeMessage,
  halfToNumber,
  type Observation,
  stringifyJson,
  Tensor,
  type UserMap
} from "@chiral/protocol"
import { Console, Duration, Effect, Logger, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "../Flags.js"
import { clientTransportFor, shown } from "../Transports.js"
import { failWith } from "./Decode.js"
import { watch } from "./ProbeWatch.js"

// ── the action of --step ─────────────────────────────────────────────────────

/**
 * The [N, D] shape of the action `--step` sends: from the metadata's
 * `action_shape` (Python convention), or `action_N`/`action_D` (C++ strings);
 * undefined when the metadata says neither. Always two dimensions: the C++
 * server reads exactly `shape[0]` and `shape[1]`.
 */
export const legacyActionShape = (metadata: UserMap): readonly [number, number] | undefined =>
  ActionSpec.shapeFromMetadata(metadata)?.shape

/**
 * `--step-action 0.1,0,-0.2`: the values, row-major, or why not. Each must be
 * finite as the float32 that travels; checked before anything is sent, so a
 * typo never gets as far as the reset.
 */
export const parseStepAction = (text: string): ReadonlyArray<number> | string => {
  const values: Array<number> = []
  for (const item of text.split(",")) {
    const trimmed = item.trim()
    const x = trimmed === "" ? Number.NaN : Number(trimmed)
    if (Number.isNaN(x)) {
      return `--step-action ${JSON.stringify(text)}: ${JSON.stringify(trimmed)} is not a number (expected numbers separated by commas, e.g. 0.1,0,-0.2)`
    }
    if (!Number.isFinite(Math.fround(x))) return `--step-action ${text}: ${trimmed} is not finite as a float32`
    values.push(x)
  }
  return values
}

// ── human summary ─────────────────────────────────────────────────────────────

/** Compact number: integers as they are, others to 6 significant digits. */
const num = (x: number | bigint): string =>
  typeof x === "bigint" || Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)))

const minMax = (t: Tensor): string => {
  const n = t.data.length
  if (n === 0) return "empty"
  const at = t.dtype === "float16"
    ? (i: number) => halfToNumber(t.data[i] as number)
    : (i: number) => Number(t.data[i]!)
  let lo = Infinity
  let hi = -Infinity
  for (let i = 0; i < n; i++) {
    const x = at(i)
    if (x < lo) lo = x
    if (x > hi) hi = x
  }
  return lo > hi ? "all NaN" : `min ${num(lo)} max ${num(hi)}`
}

const tensorText = (t: Tensor) => `${t.dtype}[${t.shape.join(", ")}] ${minMax(t)}`

/** A user map (metadata, info, extra) as compact JSON. */
const json = (m: UserMap) => stringifyJson(describeMessage({ type: "metadata_response", data: m }).data)

const cameraLines = (c: CameraFrame): Array<string> => {
  const k = c.intrinsics
  const t = c.extrinsics
  return [
    `  ${c.name}  ts ${c.timestamp.toFixed(6)}  image ${tensorText(c.image)}${
      c.depth === null ? "  no depth" : `  depth ${tensorText(c.depth)}`
    }`,
    `    K fx=${num(k[0]!)} fy=${num(k[4]!)} cx=${num(k[2]!)} cy=${num(k[5]!)}  T t=[${
      [t[3]!, t[7]!, t[11]!].map((x) => x.toFixed(4)).join(", ")
    }]`
  ]
}

const proprioLine = (name: string, t: Tensor): string =>
  t.data.length <= 16
    ? `  ${name}  ${t.dtype}[${t.shape.join(", ")}] [${Tensor.toArray(t).map((x) => typeof x === "boolean" ? String(x) : num(x)).join(", ")}]`
    : `  ${name}  ${tensorText(t)}`

const observationLines = (obs: Observation): Array<string> => [
  `  timestamp ${obs.timestamp.toFixed(6)}  ${obs.cameras.length} camera${obs.cameras.length === 1 ? "" : "s"}  extra ${json(obs.extra)}`,
  ...obs.cameras.flatMap(cameraLines),
  ...obs.proprios.map((p) => proprioLine(p.name, p.data))
]

const protocolName = (uri: string) => /^tcp\//i.test(uri) ? "Zenoh" : "WebSocket"

// ── command ───────────────────────────────────────────────────────────────────

/**
 * What one probe did and got. Only `metadata` always: `reset` with --reset
 * or --step, `step` with --step (instead of `obs`).
 */
interface ProbeResult {
  readonly metadata: UserMap
  readonly reset?: PolicyClient.ResetOutcome | undefined
  readonly obs?: Observation | undefined
  readonly step?: { readonly action: Tensor; readonly outcome: PolicyClient.StepOutcome } | undefined
}

/** An action as the output shows it: `float32[1, 7] [0.1, 0, …]`. */
const actionText = (t: Tensor) => `${t.dtype}[${t.shape.join(", ")}] [${Tensor.toArray(t).map((x) => num(x as number)).join(", ")}]`

/** What the probe did to the robot, said first: a probe that moved nothing says so too. */
const whatWasDone = (r: ProbeResult): string =>
  r.step !== undefined
    ? `reset the robot, then sent it the action ${actionText(r.step.action)} in one legacy step (--step)`
    : r.reset !== undefined
    ? "reset the robot (--reset), then read one observation (get_obs); no action sent"
    : "read only: metadata and one observation (get_obs); the robot was not reset and no action was sent"

const humanReport = (uri: string, r: ProbeResult): string => {
  const lines = [`connected to ${uri}`, whatWasDone(r), `metadata ${json(r.metadata)}`]
  if (r.reset !== undefined) lines.push(`reset  info ${json(r.reset.info)}`, ...observationLines(r.reset.obs))
  if (r.step !== undefined) {
    const s = r.step.outcome
    lines.push(
      `step  reward ${num(s.reward)}  terminated ${s.terminated}  truncated ${s.truncated}  info ${json(s.info)}`,
      ...observationLines(s.obs)
    )
  }
  if (r.obs !== undefined) lines.push("obs", ...observationLines(r.obs))
  return lines.join("\n")
}

/**
 * `{metadata, obs}`; with --reset `{metadata, reset: {obs, info}, obs}`; with
 * --step `{metadata, reset: {obs, info}, step: {action, obs, reward,
 * terminated, truncated, info}}`, as vectors.json describes messages (the
 * action sent always with its data), written by stringifyJson (NaN/±Infinity
 * as the strings "NaN", "Infinity", "-Infinity").
 */
const jsonReport = (r: ProbeResult, full: boolean): string => {
  const options = { tensorData: full }
  const metadata = describeMessage({ type: "metadata_response", data: r.metadata }).data
  const report: Record<string, unknown> = { metadata }
  if (r.reset !== undefined) {
    const { type: _r, ...reset } = describeMessage({ type: "reset_response", obs: r.reset.obs, info: r.reset.info }, options)
    report["reset"] = reset
  }
  if (r.step !== undefined) {
    const { action } = describeMessage({ type: "action", action: r.step.action, obsTimestamps: {} })
    const { obs, info, reward, terminated, truncated } = describeMessage({ type: "step_response", ...r.step.outcome }, options)
    report["step"] = { action, obs, reward, terminated, truncated, info }
  }
  if (r.obs !== undefined) report["obs"] = describeMessage({ type: "obs_response", obs: r.obs }, options)["obs"]
  // Every element on its own line would be hundreds of MB for 8 cameras: one line with --full.
  return stringifyJson(report, full ? undefined : 1)
}

/**
 * What probe says when it could not connect, in one line: a host name that
 * does not resolve names the host and the resolver's answer (at once for
 * `ENOTFOUND`; after `--timeout` for a temporary failure, which is retried).
 */
export const connectFailure = (uri: string, timeoutSeconds: number, error: TransportError): string =>
  error.unresolved !== undefined
    ? `${describeUnresolved(error.unresolved)} in ${shown(uri)}${
      error.reason === "InvalidAddress" ? "" : ` after trying for ${timeoutSeconds} s`
    }`
    : error.reason === "Unavailable"
    ? `no server at ${shown(uri)} after ${timeoutSeconds} s`
    : error.reason === "Silent"
    ? `something answered at ${shown(uri)} but did not speak ${protocolName(uri)}: ${error.detail}`
    : `cannot connect: ${error.message}`

/** What a request that went unanswered usually means: the references each answer only one of the two APIs. */
const hint = (error: RequestError): string =>
  error.reason !== "Timeout"
    ? ""
    : error.request === "obs_request"
    ? "; C++ servers answer only the legacy step, which resets the robot and sends it an action: --step --step-action V,…"
    : error.request === "action"
    ? "; Python servers do not answer the legacy step: try without --step"
    : ""

export const probe = Command.make(
  "probe",
  {
    uri: Argument.String("uri").pipe(Argument.withDescription("The server: ws://host:port (WebSocket) or tcp/host:port (Zenoh)")),
    protocol: Flags.uriProtocol(),
    keyPrefix: Flags.keyPrefix("the server's"),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "Print one JSON object in the format of the shared vectors.json, tensors as {dtype, shape}: {metadata, obs}; with --reset {metadata, reset: {obs, info}, obs}; with --step {metadata, reset: {obs, info}, step: {action, obs, reward, terminated, truncated, info}}"
      ),
      Flag.withDefault(false)
    ),
    full: Flag.Boolean("full").pipe(
      Flag.withDescription("With --json: include every tensor element (data), on one line"),
      Flag.withDefault(false)
    ),
    reset: Flag.Boolean("reset").pipe(
      Flag.withDescription(
        "Reset the robot first and show the observation the reset returns. A real robot acts on it (it may home its arm), even while a policy drives it; without --reset, probe only reads: metadata and one observation"
      ),
      Flag.withDefault(false)
    ),
    step: Flag.Boolean("step").pipe(
      Flag.withDescription(
        "Moves the robot: resets it, then takes one legacy step (the C++ `action` message, which C++ servers answer instead of get_obs) with the action --step-action gives"
      ),
      Flag.withDefault(false)
    ),
    stepAction: Flag.String("step-action").pipe(
      Flag.withDescription(
        "With --step, required: the action, N x D numbers row-major, e.g. 0.1,0,0,0,0,0,0; N x D from the metadata's action_shape (or action_N x action_D), else 1 x the count given. No default: on an arm that takes joint positions, 0 means: move that joint to 0 rad"
      ),
      Flag.withMetavar("V,…"),
      Flag.optional
    ),
    maxMessageSize: Flags.clientMaxMessageSize,
    timeout: Flag.Finite("timeout").pipe(
      Flag.withDescription(
        "Seconds to wait for the server to come up (the connection and its handshake included), and for each answer (default 10)"
      ),
      Flag.withDefault(10)
    ),
    watch: Flag.Boolean("watch").pipe(
      Flag.withDescription(
        "Keep requesting observations (no reset) and print one line per second until interrupted: observation rate, round trip p50 and max, failed requests, connection state (and how long a request has waited for its answer, once over 1 s: a robot that stopped answering keeps its connection), reconnects. The client reconnects by itself; with --json, one JSON object per line"
      ),
      Flag.withDefault(false)
    ),
    hz: Flag.Finite("hz").pipe(
      Flag.withDescription("With --watch: observations requested per second (default 10)"),
      Flag.optional
    ),
    ...Flags.decodeLimits
  },
  Effect.fnUntraced(function*(flags) {
    if (!(flags.timeout > 0)) return yield* failWith("probe", `--timeout ${flags.timeout}: expected a positive number of seconds`)
    const hz = Option.getOrUndefined(flags.hz)
    if (hz !== undefined && !flags.watch) return yield* failWith("probe", `--hz ${hz} applies to --watch only`)
    if (flags.full && !flags.json) return yield* failWith("probe", "--full applies to --json only")
    if (flags.watch) {
      const single = flags.reset ? "--reset" : flags.step ? "--step" : flags.full ? "--full" : undefined
      if (single !== undefined) {
        return yield* failWith("probe", `${single} does not apply to --watch, which only requests observations`)
      }
    }
    const stepActionText = Option.getOrUndefined(flags.stepAction)
    if (stepActionText !== undefined && !flags.step) return yield* failWith("probe", "--step-action applies to --step only")
    if (flags.step && stepActionText === undefined) {
      return yield* failWith(
        "probe",
        "--step sends the robot an action: give it with --step-action, e.g. --step-action 0,0,0,0,0,0,0 for a [1, 7] action (there is no default: on an arm that takes joint positions, 0 moves a joint to 0 rad)"
      )
    }
    const stepAction = stepActionText === undefined ? undefined : parseStepAction(stepActionText)
    if (typeof stepAction === "string") return yield* failWith("probe", stepAction)
    if (hz !== undefined && !(hz > 0 && hz <= 1000)) {
      return yield* failWith("probe", `--hz ${hz}: expected a rate above 0, at most 1000`)
    }
    const decodeLimits = Flags.decodeLimitsOf(flags)
    if (typeof decodeLimits === "string") return yield* failWith("probe", decodeLimits)
    const maxMessageBytes = Flags.maxMessageBytesOf(flags.maxMessageSize)
    if (typeof maxMessageBytes === "string") return yield* failWith("probe", maxMessageBytes)
    const transport = clientTransportFor(flags.uri, {
      protocol: Option.getOrUndefined(flags.protocol),
      keyPrefix: Option.getOrUndefined(flags.keyPrefix),
      maxMessageBytes
    })
    if (typeof transport === "string") return yield* failWith("probe", transport)
    const timeout = Duration.seconds(flags.timeout)
    const console = yield* Console.Console
    // With --json, stdout carries only the JSON: the waiting line goes to stderr.
    const connectConsole = flags.json ? { ...console, log: console.error, info: console.error } : console

    // The whole wait for the server, handshakes included, is bounded by --timeout.
    const connect = (reconnect: boolean) =>
      PolicyClient.make({
        openTimeout: timeout,
        requestTimeout: timeout,
        resetTimeout: timeout,
        decodeLimits,
        // A probe that asks once and exits has no first seconds to spare the page faults of.
        warmYoungGeneration: reconnect,
        ...(reconnect ? {} : { reconnect: false })
      }).pipe(
        Effect.provideService(Console.Console, connectConsole),
        Effect.catchTag("TransportError", (error) => failWith("probe", connectFailure(flags.uri, flags.timeout, error)))
      )

    if (flags.watch) {
      return yield* Effect.flatMap(connect(true), (client) => watch(client, hz ?? 10, flags.json)).pipe(
        Effect.scoped,
        Effect.provide(transport)
      )
    }

    const result = yield* Effect.gen(function*() {
      const client = yield* connect(false)
      const metadata = yield* client.getMetadata
      if (stepAction !== undefined) {
        // The shape is checked against the metadata before the reset: a wrong
        // count must not leave the robot reset and the step refused.
        const shape = legacyActionShape(metadata)
        const [n, d] = shape ?? [1, stepAction.length]
        if (n * d !== stepAction.length) {
          return yield* failWith(
            "probe",
            `--step-action has ${stepAction.length} value${stepAction.length === 1 ? "" : "s"}; the robot's metadata gives the action shape [${n}, ${d}]: give ${
              n * d
            } values, row-major`
          )
        }
        const action = Tensor.make("float32", [n, d], Float32Array.from(stepAction))
        yield* Console.error(`chiral probe: resetting the robot, then sending it the action ${actionText(action)} (--step)`)
        const reset = yield* client.reset
        const outcome = yield* client.step(action)
        return { metadata, reset, step: { action, outcome } } satisfies ProbeResult
      }
      if (flags.reset) {
        yield* Console.error("chiral probe: resetting the robot (--reset)")
        const reset = yield* client.reset
        return { metadata, reset, obs: yield* client.getObs } satisfies ProbeResult
      }
      return { metadata, obs: yield* client.getObs } satisfies ProbeResult
    }).pipe(
      Effect.scoped,
      Effect.provide(transport),
      Effect.catchTag("RequestError", (error) => failWith("probe", `${flags.uri}: ${error.message}${hint(error)}`))
    )
    yield* Console.log(flags.json ? jsonReport(result, flags.full) : humanReport(shown(flags.uri), result))
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Connect to a chiral server and show what it serves, without moving it: its metadata and one observation (get_obs). --reset resets the robot first; --step (with --step-action) resets it and sends it an action. Waits for the server up to --timeout; fails with one line and exit code 1. With --watch, a live health check instead: one line per second until interrupted."
  ),
  Command.withExamples([
    { command: "chiral probe ws://127.0.0.1:8765", description: "Metadata and one observation; no reset, no action" },
    { command: "chiral probe ws://127.0.0.1:8765 --json", description: "The same as JSON, tensors without data" },
    { command: "chiral probe ws://127.0.0.1:8765 --reset", description: "Reset the robot first, and show what the reset returns" },
    {
      command: "chiral probe ws://127.0.0.1:8765 --step --step-action 0.1,0,0,0,0,0,0",
      description: "Moves the robot: reset, then one legacy step with this action, as a C++ client does"
    },
    { command: "chiral probe tcp/127.0.0.1:7447", description: "A server on Zenoh (chiral serve --protocol zenoh)" },
    { command: "chiral probe ws://127.0.0.1:8765 --watch --hz 30", description: "Health check: one line per second, Ctrl-C to stop" }
  ])
)
