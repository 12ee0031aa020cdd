/**
 * One `chiral bench` run: the observation round trip, the raw-TCP baseline
 * next to it, and, with an observation stream running, the cadence of
 * actions as the server receives them.
 *
 * Without an address the run is self-contained: the simulated robot and the
 * raw-TCP baseline run in a child process (`Server.ts`) and this process is
 * the policy. With an address only what a policy can see is measured (round
 * trips and the obs stream's rate); no action is ever sent to a server we did
 * not start — it might be a real robot.
 */
import * as Path from "node:path"
import { PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { ClientTransport, type Connection, type OutgoingFrame, PolicyClient } from "@chiral/core"
import { type DecodeLimits, decodeFrame, lending, type Observation } from "@chiral/protocol"
import { Cause, Deferred, Duration, Effect, Fiber, Layer, Queue, Result, Schema, type Scope, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import type { EventLoopFigures } from "./EventLoopWatch.js"
import type * as RobotThread from "../RobotThread.js"
import * as KernelThreads from "./KernelThreads.js"
import { minorFaults } from "./MachineLimits.js"
import { type Protocol, protocols } from "./Protocols.js"
import * as RawTcp from "./RawTcp.js"
import type { ServerOptions } from "./Server.js"
import {
  arrivalTicks,
  ascending,
  cadence,
  type CadenceStats,
  mean,
  type Percentiles,
  percentiles,
  quantile,
  skippedTicks,
  splitByTransfers,
  ticksOfDues,
  transfersOf
} from "./Stats.js"

export interface BenchOptions {
  /** A running server to measure; none: start our own. */
  readonly address?: string | undefined
  readonly protocol: Protocol
  /** Where the client dispatches actions: a worker thread (default) or this one. */
  readonly thread?: "worker" | "main" | undefined
  /** Zenoh only: the largest message the client reassembles (default 1 GiB). */
  readonly maxMessageBytes?: number | undefined
  /** Where the client receives large messages: a fresh buffer each (default), or recycled memory. */
  readonly receiveBuffers?: "fresh" | "recycled" | undefined
  /** How far our own server raises its main thread, where actions reach the robot (`chiral serve --priority`); default normal. */
  readonly robotPriority?: RobotThread.Priority | undefined
  readonly cameras: number
  readonly width: number
  readonly height: number
  readonly depth: boolean
  /** Round trips to time (each of the observation and the raw baseline). */
  readonly requests: number
  readonly obsHz: number
  readonly actionHz: number
  /** Length of the stream phase, seconds. */
  readonly durationSeconds: number
  /**
   * Against a running server: how long to wait for it to answer, seconds
   * (the connection, handshake included, then each request). Default: no
   * limit for the connection, 30 s per request.
   */
  readonly timeoutSeconds?: number | undefined
  /** Limits on what the client decodes; unset: `PolicyClient.clientDecodeLimits`. */
  readonly decodeLimits?: Partial<DecodeLimits> | undefined
  /** Told what the run is doing: a phase name and how far it is (0…1). */
  readonly progress?: ((phase: string, fraction: number) => void) | undefined
}

/**
 * What `--json` prints (key order and names are the interface), written by
 * stringifyJson: a figure without samples (NaN) as the string "NaN", one that
 * does not apply as null. `JSON.parse(text, reviveNonFinite)` reads "NaN" back.
 */
export interface BenchResult {
  readonly workload: {
    readonly cameras: number
    readonly width: number
    readonly height: number
    readonly depth: boolean
    readonly frame_bytes: number
  }
  readonly obs_round_trip_ms: Percentiles
  readonly raw_tcp_round_trip_ms: { readonly p50: number | null; readonly p90: number | null; readonly p99: number | null }
  readonly ratio_to_raw_tcp: number | null
  readonly throughput_mb_s: number
  readonly obs_hz: number
  readonly action_cadence: {
    readonly [K in keyof CadenceStats]: CadenceStats[K] | null
  }
  /**
   * The same figures where the client's dispatcher wrote each action (its
   * own clock reading after the write): what `action_cadence` adds beyond
   * them is the transport and the server's event loop.
   */
  readonly action_sends: {
    readonly [K in keyof CadenceStats]: CadenceStats[K] | null
  }
  readonly rss_mb: { readonly start: number; readonly end: number }
  /**
   * Minor page faults (Linux `/proc/self/stat` minflt) per observation the
   * client received during the stream phase, in the client's process and in
   * the server's (which also updates its sensors at 30 Hz meanwhile); null
   * where not measured (no /proc, or a server we did not start).
   */
  readonly page_faults_per_obs: { readonly client: number | null; readonly server: number | null }
  /**
   * The actions of `action_cadence` by where their tick fell in the
   * observation stream: while an observation was on its way (from the
   * client's request to its arrival) or between observations; how many, and
   * their |jitter| p99 (ms, NaN for none). Null where no action was sent.
   */
  readonly action_jitter_by_stream_phase: {
    /** Observations asked for while actions were dispatched: the transfers the split is judged by. */
    readonly transfers: number
    readonly during_transfer: StreamPhaseJitter
    readonly between_transfers: StreamPhaseJitter
  } | null
  /**
   * Where `action_cadence` has fewer arrivals than the dispatcher had ticks:
   * actions the server dropped as superseded (they arrived together with a
   * newer one; dropped, not late, so the drift leaves them out) and ticks of
   * the client's dispatcher that sent nothing (its thread stalled past a
   * whole period, so every later action went a tick late: each adds a period
   * to the drift). Null where not measured (a server we did not start, or a
   * dispatcher that does not report its ticks).
   */
  readonly action_gaps: { readonly superseded: number | null; readonly ticks_skipped: number | null }
  /**
   * How the server's main thread ran while the stream ran (`EventLoopWatch`):
   * an action reaches the robot's handler only when that loop turns. Null for
   * a server we did not start.
   */
  readonly server_event_loop: EventLoopFigures | null
  /**
   * How the server's main thread was scheduled: "normal", or what it got when
   * asked to raise it (`RobotThread.raise`: "real-time (SCHED_FIFO 1)", …).
   * Null for a server we did not start.
   */
  readonly robot_thread: string | null
  /**
   * The kernel's own threads that took at least 1 ms of CPU per second while
   * the stream ran, busiest first (at most 3), with the mean length of their
   * runs (`KernelThreads`): on a kernel without preemption a long one holds
   * its CPU that long, whoever waits. Null where the system does not say.
   */
  readonly kernel_threads: ReadonlyArray<KernelThreads.KernelThreadLoad> | null
}

export interface StreamPhaseJitter {
  readonly count: number
  readonly jitter_ms_p99: number
}

/** What the human report shows beyond the JSON. */
export interface BenchReport {
  readonly result: BenchResult
  readonly address: string
  readonly protocol: Protocol
  readonly thread: "worker" | "main"
  readonly requests: number
  readonly durationSeconds: number
  readonly obsHzAsked: number
  readonly serverRssMb: { readonly start: number; readonly end: number } | undefined
  /** Actions that did not arrive in order, superseded ones aside (see `missing`). */
  readonly actionsLost: number | undefined
  /** The same cadence measured where the client sends (tells the client's lateness from the server's). */
  readonly actionSends: CadenceStats | undefined
  /** Garbage collection in this process while the stream ran. */
  readonly gc: { readonly count: number; readonly totalMs: number; readonly maxMs: number }
  /**
   * How the client received; with "recycled", how many messages' memory came
   * back for reuse while streaming, and how many collections were asked for.
   */
  readonly receiveBuffers: { readonly mode: "fresh" | "recycled"; readonly recycled: number; readonly collectionsAsked: number }
}

/** Why a run could not be completed (the server would not start or answer, the connection failed). */
export class BenchError extends Schema.TaggedError<BenchError>()("BenchError", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/**
 * Round trips before any is timed: enough for V8 to compile the request path
 * (thousands of calls for the small ones), bounded in time for large ones. A policy
 * runs for hours; its steady state is what is measured.
 */
const warmupRequests = 5000
const warmupMillis = 1500
/** How long the obs stream runs before actions start, so both are in their steady state. */
const streamSettleMillis = 500
/** How long to wait for the last actions to reach the server after dispatch stops. */
const lateArrivalMillis = 300

const mb = (bytes: number) => bytes / (1024 * 1024)
const round = (x: number, digits = 3) => Number.isFinite(x) ? Number(x.toFixed(digits)) : x

/** Monotonic ms on the same clock as the server's arrival stamps (`process.hrtime`). */
const monotonicMillis = (): number => Number(process.hrtime.bigint()) / 1e6

/**
 * The server entry next to this module in dist/. (Under vitest this module is
 * the TypeScript source; the child still runs the built JavaScript.)
 */
const serverScript = (): string => {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith(".ts")
    ? Path.join(Path.dirname(here), "..", "..", "dist", "bench", "Server.js")
    : Path.join(Path.dirname(here), "Server.js")
}

interface ChildServer {
  readonly address: string
  readonly rawPort: number
  readonly frameBytes: number
  /** How its main thread is scheduled (`BenchResult.robot_thread`). */
  readonly robotThread: string
  /** Sends a command line and waits for the reply line carrying `key`. */
  readonly ask: <A>(command: string, key: string) => Effect.Effect<A, BenchError>
}

/**
 * The server runs with the node flags this process was started with (e.g.
 * `--single-threaded-gc`), so both sides of a run are configured alike; minus
 * module resolution conditions (a test runner's source condition would point
 * the built server at TypeScript).
 */
const serverExecArgv = (): Array<string> => {
  const out: Array<string> = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--conditions" || arg === "-C") i++
    else if (!arg.startsWith("--conditions=") && !arg.startsWith("-C=")) out.push(arg)
  }
  return out
}

/** Starts `Server.ts` in a child process; it is stopped (stdin closed, then killed) with the scope. */
const startServer = (options: ServerOptions) =>
  Effect.gen(function*() {
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const commands = yield* Queue.unbounded<string, Cause.Done>()
    const encoder = new TextEncoder()
    const handle = yield* spawner.spawn(
      ChildProcess.make(process.execPath, [...serverExecArgv(), serverScript(), JSON.stringify(options)], {
        stdin: Stream.fromQueue(commands).pipe(Stream.map((line) => encoder.encode(`${line}\n`))),
        stdout: "pipe",
        stderr: "inherit",
        forceKillAfter: Duration.seconds(2)
      })
    ).pipe(Effect.mapError((error) => new BenchError({ reason: `cannot start the bench server: ${error.message}` })))
    yield* Effect.addFinalizer(() => Queue.end(commands))

    const replies = yield* Queue.unbounded<Record<string, unknown>, BenchError>()
    const exited = yield* Deferred.make<void>()
    yield* handle.stdout.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.runForEach((line) => {
        if (!line.startsWith("{")) return Effect.void
        try {
          return Queue.offer(replies, JSON.parse(line) as Record<string, unknown>)
        } catch {
          return Effect.void
        }
      }),
      Effect.ensuring(Effect.andThen(
        Queue.fail(replies, new BenchError({ reason: "the bench server exited" })),
        Deferred.succeed(exited, undefined)
      )),
      Effect.ignore,
      Effect.forkScoped
    )
    const next = <A>(key: string): Effect.Effect<A, BenchError> =>
      Queue.take(replies).pipe(
        Effect.catch((error) => Effect.fail(Cause.isDone(error) ? new BenchError({ reason: "the bench server exited" }) : error)),
        Effect.flatMap((reply) => key in reply ? Effect.succeed(reply[key] as A) : next<A>(key))
      )
    const ready = yield* next<{ address: string; raw_port: number; frame_bytes: number; robot_thread: string }>("ready").pipe(
      Effect.timeoutOrElse({
        duration: Duration.seconds(60),
        orElse: () => Effect.fail(new BenchError({ reason: "the bench server did not start within 60 s" }))
      })
    )
    return {
      address: ready.address,
      rawPort: ready.raw_port,
      frameBytes: ready.frame_bytes,
      robotThread: ready.robot_thread,
      ask: <A>(command: string, key: string) =>
        Effect.andThen(Queue.offer(commands, command), next<A>(key)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.seconds(30),
            orElse: () => Effect.fail(new BenchError({ reason: `the bench server did not answer ${command}` }))
          })
        )
    } satisfies ChildServer
  })

/**
 * What the client's transport sees: the size of the last frame received (what
 * the raw baseline must send), and when each action left (monotonic ms), to
 * tell the client's lateness from the server's.
 */
interface Meter {
  lastFrameBytes: number
  actionSends: Array<number>
  /**
   * The tick each send was for (its due time on the dispatcher's grid), when
   * the dispatcher reports it (an off-thread dispatcher does): the first is
   * where its grid starts.
   */
  actionSendDues: Array<number>
  /**
   * While actions are dispatched: when each observation was asked for, and
   * when each frame arrived (monotonic ms), to tell which actions' ticks fell
   * while an observation was on its way.
   */
  obsAsked: Array<number>
  framesReceived: Array<number>
  recording: boolean
}

/** The type of a frame small enough to be a request or an action; undefined for others. */
const smallFrameType = (frame: OutgoingFrame): string | undefined => {
  if (!(frame instanceof Uint8Array) || frame.byteLength > 4096) return undefined
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : undefined
}

/**
 * A transport that dispatches actions on a thread of its own (the WebSocket
 * client's `dispatch`, see @chiral/core's OffThreadDispatch) reports each send
 * with its time; record those too.
 */
interface Dispatching {
  readonly dispatch: {
    readonly onDispatched: (listener: (count: number, at: number, due: number, obsTime: number | undefined) => void) => void
  }
}

const offThreadSends = (connection: Connection, meter: Meter): Partial<Dispatching> => {
  const dispatch = (connection as Connection & Partial<Dispatching>).dispatch
  return dispatch === undefined ? {} : {
    dispatch: {
      ...dispatch,
      onDispatched: (listener) =>
        dispatch.onDispatched((count, at, due, obsTime) => {
          meter.actionSends.push(at)
          meter.actionSendDues.push(due)
          listener(count, at, due, obsTime)
        })
    }
  }
}

const metered = (meter: Meter, layer: Layer.Layer<ClientTransport>): Layer.Layer<ClientTransport> =>
  Layer.effect(
    ClientTransport,
    Effect.gen(function*() {
      const inner = yield* ClientTransport
      return ClientTransport.of({
        ...inner,
        connect: Effect.map(inner.connect, (connection) => ({
          ...connection,
          ...offThreadSends(connection, meter),
          send: (frame: OutgoingFrame) =>
            Effect.suspend(() => {
              const type = smallFrameType(frame)
              if (type === "apply_action") meter.actionSends.push(monotonicMillis())
              else if (type === "obs_request" && meter.recording) meter.obsAsked.push(monotonicMillis())
              return connection.send(frame)
            }),
          frames: Stream.map(connection.frames, (frame) => {
            if (meter.recording) meter.framesReceived.push(monotonicMillis())
            meter.lastFrameBytes = frame.byteLength
            return frame
          })
        }))
      })
    })
  ).pipe(Layer.provide(layer))

const workloadOf = (obs: Observation, frameBytes: number): BenchResult["workload"] => {
  const first = obs.cameras[0]
  return {
    cameras: obs.cameras.length,
    width: first?.image.shape[1] ?? 0,
    height: first?.image.shape[0] ?? 0,
    depth: obs.cameras.some((c) => c.depth !== null),
    frame_bytes: frameBytes
  }
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<number, E, R> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.map(effect, () => performance.now() - start)
  })

/** Sleeps `millis`, reporting progress every 100 ms. */
const waitWithProgress = (millis: number, report: (fraction: number) => void) =>
  Effect.gen(function*() {
    const start = performance.now()
    for (;;) {
      const elapsed = performance.now() - start
      report(Math.min(1, elapsed / millis))
      if (elapsed >= millis) return
      yield* Effect.sleep(Duration.millis(Math.min(100, millis - elapsed)))
    }
  })

/** A request's failure as the run's: its message says what went wrong. */
const request = <A>(what: Effect.Effect<A, { readonly message: string }>) =>
  Effect.mapError(what, (error) => new BenchError({ reason: error.message }))

/** The simulated robot a self-contained run measures, at the workload asked. */
const startOwnServer = (options: BenchOptions) =>
  startServer({
    protocol: options.protocol,
    host: "127.0.0.1",
    cameras: options.cameras,
    width: options.width,
    height: options.height,
    depth: options.depth,
    fps: 30,
    priority: options.robotPriority
  })

/** The policy side of a run: the metered client, and the raw-TCP baseline beside it when the server is ours. */
interface Policy {
  readonly client: PolicyClient.PolicyClientApi
  readonly raw: RawTcp.RawClient | undefined
  /** One baseline round trip, ms; NaN without a baseline. */
  readonly rawTrip: Effect.Effect<number, BenchError>
}

/**
 * Connects the client (through a transport the meter watches) and, to a
 * server we started, the raw-TCP baseline; one metadata request proves the
 * connection answers before anything is timed.
 */
const connectPolicy = (
  options: BenchOptions,
  address: string,
  server: ChildServer | undefined,
  meter: Meter,
  actionCount: number
) =>
  Effect.gen(function*() {
    const timeout = options.timeoutSeconds === undefined ? undefined : Duration.seconds(options.timeoutSeconds)
    // A measurement does not reconnect: a lost connection ends the run.
    const client = yield* PolicyClient.make({
      maxQueuedActions: actionCount,
      quiet: server !== undefined,
      reconnect: false,
      openTimeout: timeout,
      requestTimeout: timeout,
      decodeLimits: options.decodeLimits
    }).pipe(
      Effect.provide(metered(meter, protocols[options.protocol].client(address, {
            thread: options.thread,
            maxMessageBytes: options.maxMessageBytes,
            receiveBuffers: options.receiveBuffers
          }))),
      Effect.mapError((error) => new BenchError({ reason: `cannot connect to ${address}: ${error.message}` }))
    )
    yield* request(client.getMetadata)

    const raw = server === undefined
      ? undefined
      : yield* RawTcp.connect(server.rawPort, server.frameBytes).pipe(
        Effect.mapError((error) => new BenchError({ reason: `raw TCP baseline: ${error.message}` }))
      )
    const rawTrip = raw === undefined
      ? Effect.succeed(Number.NaN)
      : Effect.mapError(raw.roundTrip, (error) => new BenchError({ reason: `raw TCP baseline: ${error.message}` }))
    return { client, raw, rawTrip } satisfies Policy
  })

/** Untimed round trips (see `warmupRequests`); returns the last observation, which tells the workload. */
const warmUp = (policy: Policy) =>
  Effect.gen(function*() {
    let lastObs: Observation | undefined
    const warmupStart = performance.now()
    for (let i = 0; i < warmupRequests && (i < 5 || performance.now() - warmupStart < warmupMillis); i++) {
      yield* policy.rawTrip
      lastObs = yield* request(policy.client.getObs)
    }
    return lastObs!
  })

type Progress = (phase: string, fraction: number) => void

interface RoundTrips {
  readonly workload: BenchResult["workload"]
  /** Observation round trips, ms. */
  readonly obsTrips: ReadonlyArray<number>
  /** Baseline round trips, ms (none without a baseline). */
  readonly rawTrips: ReadonlyArray<number>
}

/** The timed round trips, interleaved with the baseline's so both see the same load. */
const roundTrips = (policy: Policy, requests: number, meter: Meter, progress: Progress) =>
  Effect.gen(function*() {
    const workload = workloadOf(yield* warmUp(policy), meter.lastFrameBytes)
    const obsTrips: Array<number> = []
    const rawTrips: Array<number> = []
    for (let i = 0; i < requests; i++) {
      progress("round trips", i / requests)
      if (policy.raw !== undefined) rawTrips.push(yield* policy.rawTrip)
      obsTrips.push(yield* timed(request(policy.client.getObs)))
    }
    progress("round trips", 1)
    return { workload, obsTrips, rawTrips } satisfies RoundTrips
  })

/**
 * Garbage-collection pauses (ms) in this process from now until `stop` (or
 * the scope's end, should the run fail first).
 */
const observeGc = Effect.gen(function*() {
  const pauses: Array<number> = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push(entry.duration)
  })
  observer.observe({ entryTypes: ["gc"] })
  yield* Effect.addFinalizer(() => Effect.sync(() => observer.disconnect()))
  return { pauses, stop: () => observer.disconnect() }
})

/**
 * Starts dispatching a queue of `actionCount` actions (numbered by their
 * first element) at `hz` to a server we started, after clearing its record of
 * arrivals; returns when that was (monotonic ms), the grid's origin should
 * the dispatcher not report one, and the server's count of superseded
 * actions before it.
 */
const startActions = (
  client: PolicyClient.PolicyClientApi,
  server: ChildServer,
  meter: Meter,
  actionCount: number,
  hz: number
) =>
  Effect.gen(function*() {
    yield* server.ask("arrivals", "arrivals")
    const supersededBefore = yield* server.ask<number>("superseded", "superseded")
    yield* request(client.putActions(Array.from({ length: actionCount }, (_, k) => [k, 0, 0, 0, 0, 0, 0])))
    meter.actionSends = []
    meter.actionSendDues = []
    meter.obsAsked = []
    meter.framesReceived = []
    meter.recording = true
    const origin = monotonicMillis()
    yield* client.startActionDispatch(hz)
    return { origin, supersededBefore }
  })

/** What the stream phase measured. */
interface StreamPhase {
  /** Observations received while it ran, and for how long it ran, ms. */
  readonly observed: number
  readonly millis: number
  /** Minor page faults per observation received, client and server; null where not measured. */
  readonly pageFaultsPerObs: BenchResult["page_faults_per_obs"]
  /** GC pauses in this process, ms. */
  readonly gcPauses: ReadonlyArray<number>
  /** Received messages whose memory came back for reuse (`FrameLease`) while it ran, and collections asked for. */
  readonly recycled: number
  readonly collectionsAsked: number
  /** Each action as the server saw it: [sequence number, arrival (monotonic ms)]; none without our server. */
  readonly arrivals: ReadonlyArray<readonly [number, number]>
  /**
   * Actions the server dropped because a newer one arrived with them (its
   * default `coalesceActions`): they were late by at least a period.
   */
  readonly superseded: number | undefined
  /** The kernel threads busy while it ran (`BenchResult.kernel_threads`). */
  readonly kernelThreads: ReadonlyArray<KernelThreads.KernelThreadLoad> | null
  /** How the server's main thread ran while the stream ran; null for a server we did not start. */
  readonly serverLoop: EventLoopFigures | null
  /** When dispatch was asked to start (monotonic ms); NaN without our server. */
  readonly origin: number
  /** Resident memory, bytes, at the start and end of the phase; the server's only if ours. */
  readonly rssStart: number
  readonly rssEnd: number
  readonly serverRssStart: number | undefined
  readonly serverRssEnd: number | undefined
}

/**
 * The obs stream at `obsHz` for `durationSeconds` and, to a server we
 * started, actions dispatched at `actionHz` meanwhile. Memory is compared
 * from its start (after the round trips have warmed both processes up) to its
 * end: what a long run would add.
 */
const streamPhase = (
  client: PolicyClient.PolicyClientApi,
  server: ChildServer | undefined,
  meter: Meter,
  actionCount: number,
  options: BenchOptions,
  progress: Progress
) =>
  Effect.gen(function*() {
    const serverRssStart = server === undefined ? undefined : yield* server.ask<number>("rss", "rss")
    const rssStart = process.memoryUsage.rss()
    let observed = 0
    const counter = yield* client.observations.pipe(
      Stream.runForEach(() =>
        Effect.sync(() => {
          observed++
        })
      ),
      Effect.forkScoped
    )
    yield* client.startObsStream(options.obsHz)
    yield* Effect.sleep(Duration.millis(streamSettleMillis))
    const gc = yield* observeGc
    // Before the timed window: a scan of /proc takes the client's thread for milliseconds.
    const kernelBefore = KernelThreads.snapshot()
    let arrivals: Array<readonly [number, number]> = []
    const serverFaultsStart = server === undefined ? undefined : yield* server.ask<number>("faults", "faults")
    if (server !== undefined) yield* server.ask<EventLoopFigures>("loop", "loop")
    const faultsStart = minorFaults()
    const releasedStart = lending.released
    const askedStart = lending.collectionsAsked
    const streamStart = performance.now()
    const observedAtStart = observed
    const started = server === undefined
      ? undefined
      : yield* startActions(client, server, meter, actionCount, options.actionHz)
    yield* waitWithProgress(options.durationSeconds * 1000, (f) => progress("obs stream + actions", f))
    // The queue was filled beyond the run on purpose: what is left is not a loss.
    if (server !== undefined) yield* Effect.andThen(client.stopActionDispatch, client.clearActions)
    meter.recording = false
    const streamMillis = performance.now() - streamStart
    const kernelAfter = KernelThreads.snapshot()
    gc.stop()
    const observedInStream = observed - observedAtStart
    const faultsEnd = minorFaults()
    const recycled = lending.released - releasedStart
    const collectionsAsked = lending.collectionsAsked - askedStart
    const serverFaultsEnd = server === undefined ? undefined : yield* server.ask<number>("faults", "faults")
    const serverLoop = server === undefined ? null : yield* server.ask<EventLoopFigures>("loop", "loop")
    const perObs = (start: number | undefined, end: number | undefined): number | null =>
      start === undefined || end === undefined || !Number.isFinite(start) || !Number.isFinite(end) ||
        observedInStream === 0
        ? null
        : round((end - start) / observedInStream, 1)
    yield* client.stopObsStream
    yield* Fiber.interrupt(counter)
    let superseded: number | undefined
    if (server !== undefined) {
      yield* Effect.sleep(Duration.millis(lateArrivalMillis))
      arrivals = yield* server.ask<Array<readonly [number, number]>>("arrivals", "arrivals")
      superseded = (yield* server.ask<number>("superseded", "superseded")) - (started?.supersededBefore ?? 0)
    }
    const rssEnd = process.memoryUsage.rss()
    const serverRssEnd = server === undefined ? undefined : yield* server.ask<number>("rss", "rss")
    return {
      observed: observedInStream,
      millis: streamMillis,
      pageFaultsPerObs: { client: perObs(faultsStart, faultsEnd), server: perObs(serverFaultsStart, serverFaultsEnd) },
      gcPauses: gc.pauses,
      recycled,
      collectionsAsked,
      arrivals,
      superseded,
      serverLoop,
      kernelThreads: kernelBefore === undefined || kernelAfter === undefined
        ? null
        : KernelThreads.between(kernelBefore, kernelAfter),
      origin: started?.origin ?? Number.NaN,
      rssStart,
      rssEnd,
      serverRssStart,
      serverRssEnd
    } satisfies StreamPhase
  })

/** The cadence figures of `--json`: null where no action was sent (a server we did not start). */
const cadenceFigures = (stats: CadenceStats | undefined, hz: number): BenchResult["action_cadence"] =>
  stats === undefined
    ? {
      hz,
      count: null,
      interval_ms_p50: null,
      jitter_ms_p50: null,
      jitter_ms_p99: null,
      jitter_ms_max: null,
      drift_ms: null
    }
    : {
      hz: stats.hz,
      count: stats.count,
      interval_ms_p50: round(stats.interval_ms_p50),
      jitter_ms_p50: round(stats.jitter_ms_p50),
      jitter_ms_p99: round(stats.jitter_ms_p99),
      jitter_ms_max: round(stats.jitter_ms_max),
      drift_ms: round(stats.drift_ms)
    }

/**
 * Actions of the run that did not arrive, beyond the `superseded` ones the
 * server dropped, plus those that arrived out of order: 0 when every action
 * sent reached the server's handler in order or was superseded.
 */
const missing = (arrivals: ReadonlyArray<readonly [number, number]>, superseded: number): number => {
  if (arrivals.length === 0) return 0
  let outOfOrder = 0
  let last = -Infinity
  for (const [seq] of arrivals) {
    if (seq < last) outOfOrder++
    else last = seq
  }
  const span = last - arrivals[0]![0] + 1
  return Math.max(0, span - arrivals.length - superseded) + outOfOrder
}

/**
 * The grid tick each send was due at, when the dispatcher reported every
 * send's due time: the sends' cadence and the arrivals' are judged by it (the
 * ticks after one it skipped are not a period late).
 */
const sendTicks = (meter: Meter, hz: number, gridStart: number): ReadonlyArray<number> | undefined =>
  meter.actionSendDues.length === meter.actionSends.length ? ticksOfDues(meter.actionSendDues, hz, gridStart) : undefined

/**
 * Each arrival's |jitter| (as `cadence` judges it: from its tick on the
 * dispatcher's grid, `ticks[k]` for arrival k), split by whether that tick
 * fell while an observation was on its way to the client.
 */
const jitterByStreamPhase = (
  times: ReadonlyArray<number>,
  ticks: ReadonlyArray<number>,
  gridStart: number,
  hz: number,
  meter: Meter
): NonNullable<BenchResult["action_jitter_by_stream_phase"]> => {
  const period = 1000 / hz
  const dues = ticks.map((tick) => gridStart + tick * period)
  const jitter = times.map((at, k) => Math.abs(at - dues[k]!))
  const transfers = transfersOf(meter.obsAsked, meter.framesReceived)
  const { between, during } = splitByTransfers(dues, jitter, transfers)
  const figures = (samples: ReadonlyArray<number>): StreamPhaseJitter => ({
    count: samples.length,
    jitter_ms_p99: round(quantile(ascending(samples), 0.99))
  })
  return { transfers: transfers.length, during_transfer: figures(during), between_transfers: figures(between) }
}

/**
 * The figures of both phases, rounded for print. `server`: the one we
 * started, if we did: then there is a raw-TCP baseline, actions were sent and
 * the server's side was measured.
 */
const report = (
  options: BenchOptions,
  address: string,
  server: ChildServer | undefined,
  trips: RoundTrips,
  stream: StreamPhase,
  meter: Meter
): BenchReport => {
  const ownServer = server !== undefined
  const rawStats = percentiles(trips.rawTrips)
  const obsStats = percentiles(trips.obsTrips)
  const times = stream.arrivals.map(([, t]) => t)
  // The ideal grid starts with the dispatcher's first tick: where the
  // dispatcher says its grid starts (one on another thread starts a little
  // after it is asked to), else the first send as the transport saw it.
  const gridStart = meter.actionSendDues[0] ?? meter.actionSends[0] ?? stream.origin
  // The grid starts at the first action sent, which is the first to arrive.
  const firstSeq = stream.arrivals[0]?.[0] ?? 0
  const sent = sendTicks(meter, options.actionHz, gridStart)
  const ticks = arrivalTicks(stream.arrivals, firstSeq, sent)
  const numbers = stream.arrivals.map(([seq]) => seq)
  const stats = ownServer ? cadence(times, options.actionHz, gridStart, ticks, numbers) : undefined
  const sends = ownServer ? cadence(meter.actionSends, options.actionHz, gridStart, sent) : undefined
  const byPhase = ownServer ? jitterByStreamPhase(times, ticks, gridStart, options.actionHz, meter) : null
  const lost = ownServer ? missing(stream.arrivals, stream.superseded ?? 0) : undefined

  const result: BenchResult = {
    workload: trips.workload,
    obs_round_trip_ms: {
      p50: round(obsStats.p50),
      p90: round(obsStats.p90),
      p99: round(obsStats.p99),
      max: round(obsStats.max)
    },
    raw_tcp_round_trip_ms: ownServer
      ? { p50: round(rawStats.p50), p90: round(rawStats.p90), p99: round(rawStats.p99) }
      : { p50: null, p90: null, p99: null },
    ratio_to_raw_tcp: ownServer ? round(obsStats.p50 / rawStats.p50, 2) : null,
    throughput_mb_s: round(trips.workload.frame_bytes / 1e6 / (mean(trips.obsTrips) / 1000), 1),
    obs_hz: round(stream.observed / (stream.millis / 1000), 2),
    action_cadence: cadenceFigures(stats, options.actionHz),
    action_sends: cadenceFigures(sends, options.actionHz),
    rss_mb: { start: round(mb(stream.rssStart), 1), end: round(mb(stream.rssEnd), 1) },
    page_faults_per_obs: stream.pageFaultsPerObs,
    action_jitter_by_stream_phase: byPhase,
    action_gaps: {
      superseded: ownServer ? stream.superseded ?? null : null,
      ticks_skipped: ownServer ? skippedTicks(sent) ?? null : null
    },
    server_event_loop: stream.serverLoop === null
      ? null
      : {
        timer_ms_p99: round(stream.serverLoop.timer_ms_p99),
        timer_ms_max: round(stream.serverLoop.timer_ms_max),
        runqueue_ms_per_s: stream.serverLoop.runqueue_ms_per_s === null ? null : round(stream.serverLoop.runqueue_ms_per_s, 1)
      },
    robot_thread: server?.robotThread ?? null,
    kernel_threads: stream.kernelThreads
  }
  return {
    result,
    address,
    protocol: options.protocol,
    thread: options.thread ?? "worker",
    requests: options.requests,
    durationSeconds: options.durationSeconds,
    obsHzAsked: options.obsHz,
    serverRssMb: stream.serverRssStart === undefined || stream.serverRssEnd === undefined
      ? undefined
      : { start: round(mb(stream.serverRssStart), 1), end: round(mb(stream.serverRssEnd), 1) },
    actionsLost: lost,
    actionSends: sends,
    gc: {
      count: stream.gcPauses.length,
      totalMs: round(stream.gcPauses.reduce((a, b) => a + b, 0), 1),
      maxMs: round(Math.max(0, ...stream.gcPauses), 2)
    },
    receiveBuffers: {
      mode: options.receiveBuffers ?? "fresh",
      recycled: stream.recycled,
      collectionsAsked: stream.collectionsAsked
    }
  }
}

/**
 * A whole run: our server started (without an address), the client
 * connected, the round trips timed, then the stream phase; see the module's
 * docstring for what is measured against a server we did not start.
 */
export const run = (
  options: BenchOptions
): Effect.Effect<BenchReport, BenchError, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const progress = options.progress ?? (() => {})
    const server = options.address === undefined ? yield* startOwnServer(options) : undefined
    const address = server?.address ?? options.address!
    const meter: Meter = {
      lastFrameBytes: 0,
      actionSends: [],
      actionSendDues: [],
      obsAsked: [],
      framesReceived: [],
      recording: false
    }
    // More actions than the stream phase can send: the queue must not run dry while its cadence is measured.
    const actionCount = Math.ceil(options.actionHz * (options.durationSeconds + 1)) + 16
    const policy = yield* connectPolicy(options, address, server, meter, actionCount)
    const trips = yield* roundTrips(policy, options.requests, meter, progress)
    const stream = yield* streamPhase(policy.client, server, meter, actionCount, options, progress)
    return report(options, address, server, trips, stream, meter)
  })
