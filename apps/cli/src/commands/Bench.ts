import { stringifyJson } from "@chiral/protocol"
import { Console, Effect, Logger, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as KernelThreads from "../bench/KernelThreads.js"
import * as Progress from "../bench/Progress.js"
import { type BenchReport, run } from "../bench/Run.js"
import * as Flags from "../Flags.js"
import { protocolFor } from "../Transports.js"
import { failWith } from "./Decode.js"
import * as SimulatedRobot from "../SimulatedRobot.js"

// ── the human report ──────────────────────────────────────────────────────────

const ms = (x: number | null) => x === null || !Number.isFinite(x) ? "—" : `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`

/** The report as aligned lines: what was measured, then how it compares. */
export const formatReport = (report: BenchReport): string => {
  const r = report.result
  const w = r.workload
  const rt = r.obs_round_trip_ms
  const raw = r.raw_tcp_round_trip_ms
  const a = r.action_cadence
  const { superseded, ticks_skipped: skipped } = r.action_gaps
  const rows: Array<readonly [string, string]> = [
    [
      "workload",
      `${w.cameras} camera${w.cameras === 1 ? "" : "s"} ${w.width}x${w.height} rgb uint8${
        w.depth ? " + float32 depth" : ""
      }, ${w.frame_bytes} bytes per observation`
    ],
    [
      "server",
      `${report.address} (${report.protocol}, actions dispatched from the ${report.thread} thread${
        r.robot_thread === null ? "" : `; the robot's main thread ${r.robot_thread === "normal" ? "at normal priority" : r.robot_thread}`
      })`
    ],
    [
      "obs round trip",
      `p50 ${ms(rt.p50)}  p90 ${ms(rt.p90)}  p99 ${ms(rt.p99)}  max ${ms(rt.max)}  (${report.requests} requests)`
    ],
    ["raw TCP round trip", raw.p50 === null ? "— (only against our own server)" : `p50 ${ms(raw.p50)}  p90 ${ms(raw.p90)}  p99 ${ms(raw.p99)}`],
    ["ratio to raw TCP", r.ratio_to_raw_tcp === null ? "—" : `${r.ratio_to_raw_tcp.toFixed(2)}×`],
    ["throughput", `${r.throughput_mb_s} MB/s`],
    ["obs stream", `${r.obs_hz} Hz (asked ${report.obsHzAsked} Hz, ${report.durationSeconds} s)`],
    [
      `actions at ${a.hz} Hz`,
      a.count === null
        ? "not measured (actions are only sent to our own server)"
        : `${a.count} arrived${
          superseded ? ` (${superseded} superseded: late, a newer one arrived with them; dropped, not in the drift)` : ""
        }${
          report.actionsLost ? ` (${report.actionsLost} missing or out of order)` : ""
        }; interval p50 ${
          ms(a.interval_ms_p50)
        }; |jitter| p50 ${ms(a.jitter_ms_p50)}  p99 ${ms(a.jitter_ms_p99)}  max ${ms(a.jitter_ms_max)}; drift ${
          ms(a.drift_ms)
        }`
    ],
    [
      "  as sent by the client",
      report.actionSends === undefined
        ? "—"
        : `${report.actionSends.count} sent${
          skipped ? ` (${skipped} tick${skipped === 1 ? "" : "s"} skipped: a period of drift each)` : ""
        }; |jitter| p50 ${ms(report.actionSends.jitter_ms_p50)}  p99 ${
          ms(report.actionSends.jitter_ms_p99)
        }  max ${ms(report.actionSends.jitter_ms_max)}; drift ${ms(report.actionSends.drift_ms)}`
    ],
    [
      "  by stream phase",
      r.action_jitter_by_stream_phase === null
        ? "—"
        : `ticks while an observation was on its way: ${r.action_jitter_by_stream_phase.during_transfer.count}, |jitter| p99 ${
          ms(r.action_jitter_by_stream_phase.during_transfer.jitter_ms_p99)
        }; between observations: ${r.action_jitter_by_stream_phase.between_transfers.count}, p99 ${
          ms(r.action_jitter_by_stream_phase.between_transfers.jitter_ms_p99)
        }`
    ],
    [
      "server event loop",
      r.server_event_loop === null
        ? "— (only for our own server)"
        : `a 1 ms timer's interval p99 ${ms(r.server_event_loop.timer_ms_p99)}  max ${ms(r.server_event_loop.timer_ms_max)}${
          r.server_event_loop.runqueue_ms_per_s === null
            ? ""
            : `; main thread waited for a core ${r.server_event_loop.runqueue_ms_per_s} ms/s`
        } (actions reach the robot's handler as this loop turns)`
    ],
    [
      "this machine's kernel",
      r.kernel_threads === null
        ? "— (its threads are not visible here)"
        : `threads ${KernelThreads.describe(r.kernel_threads)} (while the stream ran; without kernel preemption a long run holds its core)`
    ],
    [
      "client gc (stream)",
      `${report.gc.count} pauses, ${report.gc.totalMs} ms in all, longest ${report.gc.maxMs} ms`
    ],
    [
      "receive buffers",
      report.receiveBuffers.mode === "fresh"
        ? "fresh (one per observation)"
        : `recycled (${report.receiveBuffers.recycled} observations' memory came back while streaming; ${report.receiveBuffers.collectionsAsked} collections asked for)`
    ],
    [
      "rss",
      `client ${r.rss_mb.start} → ${r.rss_mb.end} MB${
        report.serverRssMb === undefined ? "" : `; server ${report.serverRssMb.start} → ${report.serverRssMb.end} MB`
      }`
    ],
    [
      "page faults / obs",
      `client ${r.page_faults_per_obs.client ?? "—"}; server ${r.page_faults_per_obs.server ?? "—"} (minor faults while streaming)`
    ]
  ]
  const pad = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(pad)}  ${v}`).join("\n")
}

const positive = (flag: string, value: number, max: number): string | undefined =>
  Number.isFinite(value) && value > 0 && value <= max ? undefined : `--${flag} ${value}: expected a number above 0, at most ${max}`

const integer = (flag: string, value: number, min: number, max: number): string | undefined =>
  Number.isInteger(value) && value >= min && value <= max
    ? undefined
    : `--${flag} ${value}: expected an integer from ${min} to ${max}`

/** The flags given that set the bench's own robot and its actions (none applies to a running server). */
const workloadFlagsGiven = (flags: {
  readonly cameras: Option.Option<number>
  readonly size: Option.Option<string>
  readonly depth: Option.Option<boolean>
  readonly actionHz: Option.Option<number>
  readonly robotPriority: Option.Option<string>
}): ReadonlyArray<string> => [
  ...(Option.isSome(flags.cameras) ? ["--cameras"] : []),
  ...(Option.isSome(flags.size) ? ["--size"] : []),
  ...(Option.isSome(flags.depth) ? [flags.depth.value ? "--depth" : "--no-depth"] : []),
  ...(Option.isSome(flags.actionHz) ? ["--action-hz"] : []),
  ...(Option.isSome(flags.robotPriority) ? ["--robot-priority"] : [])
]

// ── command ───────────────────────────────────────────────────────────────────

export const bench = Command.make(
  "bench",
  {
    uri: Argument.String("uri").pipe(
      Argument.withDescription("A running server to measure (round trips and obs rate only; no actions are sent)"),
      Argument.optional
    ),
    protocol: Flags.uriProtocol(
      "Transport to measure: websocket or zenoh (a Zenoh peer on tcp/host:port, keys chiral/c2s and chiral/s2c, as the references). Without a URI, the simulated robot serves websocket unless told"
    ),
    thread: Flag.Literals("thread", ["worker", "main"]).pipe(
      Flag.withDescription(
        "Where the client dispatches actions: a worker thread of its own (default), or the main thread"
      ),
      Flag.withDefault("worker")
    ),
    receiveBuffers: Flag.Literals("receive-buffers", ["fresh", "recycled"]).pipe(
      Flag.withDescription(
        "Where the client receives observations: a fresh buffer each (default), or memory recycled once an observation's arrays are collected (the transports' receiveBuffers option)"
      ),
      Flag.withDefault("fresh")
    ),
    // The bench's own robot: optional, so that a URI given with them is refused rather than ignored.
    cameras: Flag.Int("cameras").pipe(
      Flag.withDescription(`Cameras of the bench's simulated robot, named cam_0, cam_1, … (default ${SimulatedRobot.defaults.cameras}; without URI only)`),
      Flag.optional
    ),
    size: Flag.String("size").pipe(
      Flag.withDescription(
        `Image size of the bench's simulated robot, WIDTHxHEIGHT, RGB uint8 (default ${SimulatedRobot.defaults.width}x${SimulatedRobot.defaults.height}; without URI only)`
      ),
      Flag.optional
    ),
    depth: Flag.Boolean("depth").pipe(
      Flag.withDescription("Give every camera of the bench's simulated robot a float32 depth image (default; --no-depth: RGB only; without URI only)"),
      Flag.optional
    ),
    robotPriority: Flags.robotPriority("robot-priority", "; without URI only (the bench's robot)"),
    requests: Flag.Int("requests").pipe(
      Flag.withDescription("Observation round trips to time, and as many raw-TCP ones (default 100)"),
      Flag.withDefault(100)
    ),
    obsHz: Flag.Finite("obs-hz").pipe(Flag.withDescription("Rate of the observation stream in Hz (default 30)"), Flag.withDefault(30)),
    actionHz: Flag.Finite("action-hz").pipe(
      Flag.withDescription("Rate of action dispatch in Hz (default 10; without URI only: no action is sent to a running server)"),
      Flag.optional
    ),
    duration: Flag.Finite("duration").pipe(
      Flag.withDescription("Seconds the observation stream and the action dispatch run (default 10)"),
      Flag.withDefault(10)
    ),
    maxMessageSize: Flags.clientMaxMessageSize,
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "Print one JSON object: {workload, obs_round_trip_ms, raw_tcp_round_trip_ms, ratio_to_raw_tcp, throughput_mb_s, obs_hz, action_cadence, action_sends, rss_mb, page_faults_per_obs, action_jitter_by_stream_phase, action_gaps, server_event_loop, robot_thread, kernel_threads}; null where a figure does not apply, \"NaN\" where there were no samples"
      ),
      Flag.withDefault(false)
    ),
    timeout: Flag.Finite("timeout").pipe(
      Flag.withDescription(
        "With URI: seconds to wait for the server (the connection and its handshake included), and for each answer (default: wait for the server as long as it takes, 30 s per answer)"
      ),
      Flag.optional
    ),
    ...Flags.decodeLimits
  },
  Effect.fnUntraced(function*(flags) {
    const ownRobot = workloadFlagsGiven(flags)
    if (Option.isSome(flags.uri) && ownRobot.length > 0) {
      return yield* failWith(
        "bench",
        `${ownRobot.join(", ")} set${ownRobot.length === 1 ? "s" : ""} the bench's own robot; a running server is measured with its own cameras, and no action is sent to it (drop ${ownRobot.length === 1 ? "it" : "them"}, or the URI)`
      )
    }
    const cameras = Option.getOrElse(flags.cameras, () => SimulatedRobot.defaults.cameras)
    const actionHz = Option.getOrElse(flags.actionHz, () => 10)
    const size = Flags.parseSize(Option.getOrElse(flags.size, () => `${SimulatedRobot.defaults.width}x${SimulatedRobot.defaults.height}`))
    if (typeof size === "string") return yield* failWith("bench", size)
    const bad = integer("cameras", cameras, 0, 256) ?? integer("requests", flags.requests, 1, 1_000_000) ??
      positive("obs-hz", flags.obsHz, 1000) ?? positive("action-hz", actionHz, 1000) ??
      positive("duration", flags.duration, 24 * 3600)
    if (bad !== undefined) return yield* failWith("bench", bad)
    const timeout = Option.getOrUndefined(flags.timeout)
    if (timeout !== undefined && !(timeout > 0)) {
      return yield* failWith("bench", `--timeout ${timeout}: expected a positive number of seconds`)
    }
    const decodeLimits = Flags.decodeLimitsOf(flags)
    if (typeof decodeLimits === "string") return yield* failWith("bench", decodeLimits)
    const protocol = protocolFor(Option.getOrUndefined(flags.uri), Option.getOrUndefined(flags.protocol))
    if (protocol !== "websocket" && protocol !== "zenoh") return yield* failWith("bench", protocol)
    const maxMessageBytes = Flags.maxMessageBytesOf(flags.maxMessageSize)
    if (typeof maxMessageBytes === "string") return yield* failWith("bench", maxMessageBytes)
    if (maxMessageBytes !== undefined && protocol !== "zenoh") {
      return yield* failWith("bench", "--max-message-size applies to --protocol zenoh only (a WebSocket client takes messages of any size)")
    }
    const bar = Progress.make()
    const report = yield* run({
      address: Option.getOrUndefined(flags.uri),
      protocol,
      thread: flags.thread,
      receiveBuffers: flags.receiveBuffers,
      robotPriority: Option.getOrUndefined(flags.robotPriority),
      maxMessageBytes,
      cameras,
      width: size.width,
      height: size.height,
      depth: Option.getOrElse(flags.depth, () => true),
      requests: flags.requests,
      obsHz: flags.obsHz,
      actionHz,
      durationSeconds: flags.duration,
      timeoutSeconds: timeout,
      decodeLimits,
      progress: bar.update
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.sync(bar.done)),
      Effect.catchTag("BenchError", (error) => failWith("bench", error.reason))
    )
    yield* Console.log(flags.json ? stringifyJson(report.result) : formatReport(report))
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Measure a transport: observation round trip against a raw-TCP baseline, throughput, the obs stream's rate, and the cadence of actions as the server receives them (interval, |jitter| against the ideal grid, drift) while the stream runs. Without URI it starts the simulated robot in a child process."
  ),
  Command.withExamples([
    { command: "chiral bench", description: "8 cameras 640x480 + depth, 30 Hz obs, 10 Hz actions, 10 s" },
    { command: "chiral bench --cameras 1 --size 64x48 --json", description: "A small workload, as JSON" },
    { command: "chiral bench --action-hz 100 --duration 30", description: "Action cadence at 100 Hz" },
    {
      command: "chiral bench --action-hz 30 --robot-priority realtime",
      description: "The robot's thread at SCHED_FIFO 1 (as root, or with CAP_SYS_NICE or ulimit -r 1): how much of the actions' lateness was waiting for a core"
    },
    { command: "chiral bench ws://127.0.0.1:8765", description: "Round trips against a running server" }
  ])
)
