import { PolicyClient, type RequestError } from "@chiral/core"
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

// ── the zero action for --step ───────────────────────────────────────────────

const positiveInt = (u: unknown): number | undefined => {
  const n = typeof u === "string" && u.trim() !== "" ? Number(u) : u
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : undefined
}

/** A list of dimensions, also when a C++ server sent it as a string ("[1,7]"). */
const dimensions = (u: unknown): ReadonlyArray<number> | undefined => {
  let value = u
  if (typeof value === "string") {
    try {
      value = JSON.parse(value)
    } catch {
      return undefined
    }
  }
  if (!Array.isArray(value) || value.length === 0) return undefined
  const dims = value.map(positiveInt)
  return dims.every((d) => d !== undefined) ? dims as ReadonlyArray<number> : undefined
}

/**
 * The [N, D] shape of the zero action `--step` sends: from the metadata's
 * `action_shape` (Python convention), or `action_N`/`action_D` (C++ strings),
 * else [1, 7]. Always two dimensions: the C++ server reads exactly `shape[0]`
 * and `shape[1]`.
 */
export const legacyActionShape = (metadata: UserMap): readonly [number, number] => {
  const shape = dimensions(metadata["action_shape"])
  if (shape !== undefined) {
    if (shape.length === 1) return [1, shape[0]!]
    return [shape[0]!, shape.slice(1).reduce((a, b) => a * b, 1)]
  }
  const d = positiveInt(metadata["action_D"])
  if (d !== undefined) return [positiveInt(metadata["action_N"]) ?? 1, d]
  return [1, 7]
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

interface ProbeResult {
  readonly metadata: UserMap
  readonly reset: PolicyClient.ResetOutcome
  readonly obs?: Observation | undefined
  readonly step?: PolicyClient.StepOutcome | undefined
}

const humanReport = (uri: string, r: ProbeResult): string => {
  const lines = [`connected to ${uri}`, `metadata ${json(r.metadata)}`, `reset  info ${json(r.reset.info)}`]
  lines.push(...observationLines(r.reset.obs))
  if (r.step !== undefined) {
    const s = r.step
    lines.push(
      `step  reward ${num(s.reward)}  terminated ${s.terminated}  truncated ${s.truncated}  info ${json(s.info)}`,
      ...observationLines(s.obs)
    )
  }
  if (r.obs !== undefined) lines.push("obs", ...observationLines(r.obs))
  return lines.join("\n")
}

/**
 * `{metadata, reset: {obs, info}, obs}` or `{…, step: {obs, reward, terminated, truncated, info}}`,
 * as vectors.json describes messages, written by stringifyJson (NaN/±Infinity as
 * the strings "NaN", "Infinity", "-Infinity").
 */
const jsonReport = (r: ProbeResult, full: boolean): string => {
  const options = { tensorData: full }
  const metadata = describeMessage({ type: "metadata_response", data: r.metadata }).data
  const { type: _r, ...reset } = describeMessage({ type: "reset_response", obs: r.reset.obs, info: r.reset.info }, options)
  const report: Record<string, unknown> = { metadata, reset }
  if (r.step !== undefined) {
    const { obs, info, reward, terminated, truncated } = describeMessage({ type: "step_response", ...r.step }, options)
    report["step"] = { obs, reward, terminated, truncated, info }
  }
  if (r.obs !== undefined) report["obs"] = describeMessage({ type: "obs_response", obs: r.obs }, options)["obs"]
  // Every element on its own line would be hundreds of MB for 8 cameras: one line with --full.
  return stringifyJson(report, full ? undefined : 1)
}

/** What a request that went unanswered usually means: the references each answer only one of the two APIs. */
const hint = (error: RequestError): string =>
  error.reason !== "Timeout"
    ? ""
    : error.request === "obs_request"
    ? "; C++ servers answer only the legacy step: try --step"
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
        "Print one JSON object {metadata, reset: {obs, info}, obs} (or step instead of obs) in the format of the shared vectors.json; tensors as {dtype, shape}"
      ),
      Flag.withDefault(false)
    ),
    full: Flag.Boolean("full").pipe(
      Flag.withDescription("With --json: include every tensor element (data), on one line"),
      Flag.withDefault(false)
    ),
    step: Flag.Boolean("step").pipe(
      Flag.withDescription(
        "Instead of one obs_request, take one legacy step (the C++ `action` message) with a zero action of the metadata's action_shape (or action_N x action_D; 1x7 when neither)"
      ),
      Flag.withDefault(false)
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
        "Keep requesting observations (no reset) and print one line per second until interrupted: observation rate, round trip p50 and max, failed requests, connection state, reconnects. The client reconnects by itself; with --json, one JSON object per line"
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
        ...(reconnect ? {} : { reconnect: false })
      }).pipe(
        Effect.provideService(Console.Console, connectConsole),
        Effect.catchTag("TransportError", (error) =>
          error.reason === "Unavailable"
            ? failWith("probe", `no server at ${shown(flags.uri)} after ${flags.timeout} s`)
            : error.reason === "Silent"
            ? failWith("probe", `something answered at ${shown(flags.uri)} but did not speak ${protocolName(flags.uri)}: ${error.detail}`)
            : failWith("probe", `cannot connect: ${error.message}`))
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
      const reset = yield* client.reset
      if (flags.step) {
        const [n, d] = legacyActionShape(metadata)
        const step = yield* client.step(Tensor.zeros("float32", [n, d]))
        return { metadata, reset, step } satisfies ProbeResult
      }
      return { metadata, reset, obs: yield* client.getObs } satisfies ProbeResult
    }).pipe(
      Effect.scoped,
      Effect.provide(transport),
      Effect.catchTag("RequestError", (error) => failWith("probe", `${flags.uri}: ${error.message}${hint(error)}`))
    )
    yield* Console.log(flags.json ? jsonReport(result, flags.full) : humanReport(shown(flags.uri), result))
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Connect to a chiral server and show what it serves: its metadata, the observation a reset returns, and one observation (get_obs), or with --step one legacy step. Waits for the server up to --timeout; fails with one line and exit code 1. With --watch, a live health check instead: one line per second until interrupted."
  ),
  Command.withExamples([
    { command: "chiral probe ws://127.0.0.1:8765", description: "Summarize metadata, reset and one observation" },
    { command: "chiral probe ws://127.0.0.1:8765 --step", description: "Legacy step, as a C++ client does" },
    { command: "chiral probe ws://127.0.0.1:8765 --json", description: "Everything as JSON, tensors without data" },
    { command: "chiral probe tcp/127.0.0.1:7447", description: "A server on Zenoh (chiral serve --protocol zenoh)" },
    { command: "chiral probe ws://127.0.0.1:8765 --watch --hz 30", description: "Health check: one line per second, Ctrl-C to stop" }
  ])
)
