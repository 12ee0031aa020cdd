import * as Net from "node:net"
import { ServerTransport } from "@chiral/core"
import { LiveView, Recorder, RecordingProxy } from "@chiral/record"
import { WebSocketTransport } from "@chiral/websocket"
import { Zenoh } from "@chiral/zenoh"
import { Console, Deferred, Duration, Effect, Logger, Option, Schedule } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "../Flags.js"
import { clientTransportFor, serverTransports, shown, uriTokenOf, withToken } from "../Transports.js"
import { failWith } from "./Decode.js"

/** Default listening ports: the robot's own plus one, so both can run on one machine. */
export const defaultListenPorts = { websocket: 8766, zenoh: 7448 } as const

/**
 * A size in decimal units that still says something for a small recording:
 * `13.6 kB`, `17.2 MB`, `512 bytes`. Rates are sizes too, and fractional: a
 * whole number of bytes is all that says something below 1 kB.
 */
const size = (bytes: number) => {
  const whole = Math.round(bytes)
  return whole >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : whole >= 1e3 ? `${(bytes / 1e3).toFixed(1)} kB` : `${whole} bytes`
}

/** "1 frame", "3 frames". */
export const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`

/** The host and TCP port of a robot URI (`ws://host:port/…`, `wss://…`, `tcp/host:port`), if it has them. */
export const endpointOf = (uri: string): { readonly host: string; readonly port: number } | undefined => {
  if (uri.startsWith("tcp/")) return Zenoh.parseLocator(uri)
  try {
    const url = new URL(uri)
    if (url.protocol !== "ws:" && url.protocol !== "wss:") return undefined
    const port = url.port === "" ? (url.protocol === "ws:" ? 80 : 443) : Number(url.port)
    return { host: url.hostname.replace(/^\[|\]$/g, ""), port }
  } catch {
    return undefined
  }
}

/** Seconds a client is held while no robot answers (`RecordingProxy`'s default, which `chiral record` keeps). */
const heldSeconds = Duration.toSeconds(RecordingProxy.defaultUpstreamTimeout)

/** How the start-up probe of the robot's address failed: Node's error code, if any, and what to show. */
export interface ProbeFailure {
  readonly code: string | undefined
  readonly problem: string
}

/**
 * The start-up warning for a robot address that did not accept a TCP
 * connection. A host name the resolver does not know (ENOTFOUND) is said as
 * such: clients are then turned away at once, not held (`TransportError`'s
 * `InvalidAddress`, which the proxy does not retry), and waiting for the
 * robot will not help.
 */
export const nobodyAnswersWarning = (upstream: string, host: string, failure: ProbeFailure): string =>
  failure.code === "ENOTFOUND"
    ? `chiral record: warning: no host "${host}" is known to the resolver (ENOTFOUND): each client is turned away at once until it is; check --upstream`
    : `chiral record: warning: nothing answers at ${
      shown(upstream)
    } yet (${failure.problem}): each client is held up to ${heldSeconds} s and then turned away, until the robot is up`

/**
 * Warns at start when nothing accepts a TCP connection at the robot's
 * address, tried once with a bare connection closed at once: no handshake, so
 * a chiral-ts robot sees no client and runs no onConnect (a Python
 * `websockets` robot may log a closed or failed handshake). Otherwise the
 * first word of a robot that is not up would come only when a client
 * connects.
 */
const warnIfNobodyAnswers = (upstream: string): Effect.Effect<void> => {
  const endpoint = endpointOf(upstream)
  if (endpoint === undefined) return Effect.void
  return Effect.callback<ProbeFailure | undefined>((resume) => {
    const socket = Net.connect({ host: endpoint.host, port: endpoint.port })
    socket.setTimeout(heldSeconds * 1000)
    const done = (failure: ProbeFailure | undefined) => {
      socket.destroy()
      resume(Effect.succeed(failure))
    }
    socket.once("connect", () => done(undefined))
    socket.once("timeout", () => done({ code: undefined, problem: `no answer within ${heldSeconds} s` }))
    socket.once("error", (error: NodeJS.ErrnoException) => done({ code: error.code, problem: error.code ?? error.message }))
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.flatMap((failure) =>
      failure === undefined ? Effect.void : Console.error(nobodyAnswersWarning(upstream, endpoint.host, failure))
    )
  )
}

/**
 * One line of progress: frames, observations, actions, bytes of frames
 * recorded and their rate, bytes in the file (after compression), drops.
 */
export const progressLine = (stats: Recorder.RecorderStats, seconds: number): string => {
  const w = stats.written
  const rate = seconds > 0 ? stats.recordedBytes / seconds : 0
  const drops = stats.dropped === 0 ? "" : `, ${count(stats.dropped, "frame")} dropped (${size(stats.droppedBytes)}: the disk is behind)`
  const failure = stats.failure === undefined ? "" : `, writer failed: ${stats.failure}`
  return `${count(w.counts.frames, "frame")} (${count(w.counts.observations, "observation")}, ${count(w.counts.actions, "action")}), ${
    size(stats.recordedBytes)
  } recorded (${size(rate)}/s), ${size(w.fileBytes)} in the file, ${seconds.toFixed(0)} s${drops}${failure}`
}

/**
 * Progress on stdout: redrawn in place twice a second on a terminal,
 * otherwise one line every `every` seconds (default 10: a log file gets a few
 * lines a minute).
 */
const showProgress = (recorder: Recorder.Recorder, started: number, every: number | undefined) => {
  const tty = process.stdout.isTTY === true && every === undefined
  const line = () => progressLine(recorder.stats(), (performance.now() - started) / 1000)
  const period = tty ? Duration.millis(500) : Duration.seconds(every ?? 10)
  const draw = tty ? Effect.sync(() => process.stdout.write(`\r\x1b[2K${line()}`)) : Effect.suspend(() => Console.log(line()))
  return Effect.sleep(period).pipe(
    Effect.andThen(Effect.repeat(draw, Schedule.spaced(period))),
      Effect.ensuring(tty ? Effect.sync(() => process.stdout.write("\r\x1b[2K")) : Effect.void)
    )
}

/**
 * Runs `effect` (the recording, whose scope completes the file) until it
 * ends or the process gets SIGHUP (the terminal closed, the SSH connection
 * dropped), which then ends it as Ctrl-C does: interrupted, the file
 * completed, exit 130. NodeRuntime.runMain interrupts on SIGINT and SIGTERM
 * only, and Node's default for SIGHUP is to exit at once, leaving the file
 * without its summary. A failed write to stdout or stderr (the terminal
 * gone: EIO; a closed pipe: EPIPE) is ignored from then on: unhandled, it
 * ended the process before the file was completed, and there is nobody left
 * to tell.
 */
const completedOnHangup = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      ignoreOutputErrors()
      const hungUp = Deferred.makeUnsafe<void>()
      // Stays installed until the file is complete: a second SIGHUP must not kill the process meanwhile.
      const onHangup = () => Deferred.doneUnsafe(hungUp, Effect.void)
      process.on("SIGHUP", onHangup)
      return { hungUp, onHangup }
    }),
    ({ hungUp }) =>
      Effect.raceFirst(
        Effect.map(effect, (a) => ({ a })),
        Effect.as(Deferred.await(hungUp), undefined)
      ).pipe(Effect.flatMap((done) => done === undefined ? Effect.interrupt : Effect.succeed(done.a))),
    ({ onHangup }) => Effect.sync(() => process.removeListener("SIGHUP", onHangup))
  )

let outputErrorsIgnored = false

/**
 * For the rest of the process: an error of a write to the gone terminal may
 * be emitted after the recording ended (the summary line's), up to the exit.
 */
const ignoreOutputErrors = () => {
  if (outputErrorsIgnored) return
  outputErrorsIgnored = true
  const ignore = () => undefined
  process.stdout.on("error", ignore)
  process.stderr.on("error", ignore)
}

export const record = Command.make(
  "record",
  {
    upstream: Flag.String("upstream").pipe(
      Flag.withDescription("The robot: ws://host:port (WebSocket) or tcp/host:port (Zenoh)")
    ),
    output: Flag.String("output").pipe(
      Flag.withAlias("o"),
      Flag.withDescription("The MCAP file to write (replaced if it exists)")
    ),
    listen: Flag.Int("listen").pipe(
      Flag.withDescription(
        `Port clients connect to instead of the robot's; 0 picks a free one (default ${defaultListenPorts.websocket}, ${defaultListenPorts.zenoh} with --protocol zenoh)`
      ),
      Flag.optional
    ),
    host: Flags.host(),
    protocol: Flags.serverProtocol("Transport clients use to reach the proxy", "; the robot's is the --upstream URI's"),
    token: Flags.token("the --upstream URI's token (clients present the proxy what they would present the robot)", {
      note: "; the proxy presents it to a WebSocket robot whose --upstream URI has none"
    }),
    keyPrefix: Flags.keyPrefix("the proxy's"),
    upstreamKeyPrefix: Flags.keyPrefix("the robot's", { name: "upstream-key-prefix" }),
    compression: Flag.Literals("compression", ["zstd", "none"] as const).pipe(
      Flag.withDescription("Chunk compression: zstd (level 1, WebAssembly) or none (default zstd)"),
      Flag.withDefault("zstd")
    ),
    maxPendingMb: Flag.Int("max-pending-mb").pipe(
      Flag.withDescription(
        "MB of frames that may wait for the disk; beyond it frames are dropped from the recording (counted and shown), never from the forwarding (default 256)"
      ),
      Flag.withDefault(256)
    ),
    viewPort: Flag.Int("view-port").pipe(
      Flag.withDescription(
        "Also serve a live Foxglove view (foxglove.websocket.v1) of what passes, actions included, on this port, on --host; viewers present the proxy's token, if any (ws://host:port/?token=T)"
      ),
      Flag.optional
    ),
    progressEvery: Flag.Finite("progress-every").pipe(
      Flag.withDescription("Print a progress line every this many seconds (default: redrawn in place on a terminal, every 10 s otherwise)"),
      Flag.optional
    ),
    viewHz: Flag.Finite("view-hz").pipe(
      Flag.withDescription("Observations per second the live view shows at most (default 10)"),
      Flag.withDefault(10)
    )
  },
  Effect.fnUntraced(function*(flags) {
    const listen = Option.getOrUndefined(flags.listen)
    const viewPort = Option.getOrUndefined(flags.viewPort)
    const keyPrefix = Option.getOrUndefined(flags.keyPrefix)
    if (keyPrefix !== undefined && flags.protocol !== "zenoh") return yield* failWith("record", "--key-prefix applies to --protocol zenoh only")
    for (const [flag, port] of [["listen", listen], ["view-port", viewPort]] as const) {
      if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
        return yield* failWith("record", `--${flag} ${port}: expected a port from 0 to 65535`)
      }
    }
    if (!(flags.maxPendingMb >= 1)) return yield* failWith("record", `--max-pending-mb ${flags.maxPendingMb}: expected at least 1`)
    const progressEvery = Option.getOrUndefined(flags.progressEvery)
    if (progressEvery !== undefined && !(progressEvery > 0)) {
      return yield* failWith("record", `--progress-every ${progressEvery}: expected a positive number of seconds`)
    }
    if (!(flags.viewHz > 0)) return yield* failWith("record", `--view-hz ${flags.viewHz}: expected a positive rate`)
    // A robot that requires a token must not be reachable through the proxy
    // without one: by default the proxy requires the robot's own token; a
    // token given for the proxy is the robot's too when its URI has none
    // (one CHIRAL_TOKEN for both, as `chiral view`).
    const upstreamToken = uriTokenOf(flags.upstream)
    const resolved = yield* Flags.tokenOf(flags.token, flags.protocol, upstreamToken)
    if ("error" in resolved) return yield* failWith("record", resolved.error)
    const token = resolved.token
    const upstream = clientTransportFor(withToken(flags.upstream, token), {
      keyPrefix: Option.getOrUndefined(flags.upstreamKeyPrefix),
      dispatchThread: "main",
      sessionThread: "main"
    })
    if (typeof upstream === "string") return yield* failWith("record", `--upstream: ${upstream}`)
    const server = serverTransports[flags.protocol]({
      host: flags.host,
      port: listen ?? defaultListenPorts[flags.protocol],
      keyPrefix,
      webSocket: { token }
    })

    let summary: (() => string) | undefined
    yield* completedOnHangup(Effect.gen(function*() {
      const started = performance.now()
      const recorder = yield* Recorder.make({
        path: flags.output,
        writer: { compression: flags.compression },
        maxPendingBytes: flags.maxPendingMb * 1024 * 1024
      })
      summary = () => `chiral record: ${flags.output}: ${progressLine(recorder.stats(), (performance.now() - started) / 1000)}`
      const taps: Array<RecordingProxy.Tap> = []
      if (viewPort !== undefined) {
        // What passes is the robot's cameras and actions: watched with the token it takes to drive.
        const view = yield* LiveView.make({ host: flags.host, port: viewPort, hz: flags.viewHz, withActions: true, token })
        taps.push(view.tap)
        yield* Console.error(
          `chiral record: Foxglove live view on ${view.address}${token === undefined ? "" : ` (token required: ${view.address}/?token=***)`}`
        )
      }
      const address = (yield* ServerTransport).address
      if (upstreamToken !== undefined && token === undefined && !WebSocketTransport.isLoopbackHost(flags.host)) {
        yield* Console.error(
          `chiral record: warning: the robot requires a token, and Zenoh has none: whoever reaches ${address} drives the robot without it (--host 127.0.0.1 keeps the proxy to this machine; --protocol websocket requires the robot's token)`
        )
      }
      yield* Console.error(
        `chiral record: listening on ${address} (${token === undefined ? "" : "token required, "}forwarding to ${
          shown(flags.upstream)
        }, recording to ${flags.output})`
      )
      yield* Effect.forkScoped(showProgress(recorder, started, progressEvery))
      yield* Effect.forkScoped(warnIfNobodyAnswers(flags.upstream))
      return yield* RecordingProxy.run({ recorder, taps })
    }).pipe(
      Effect.scoped,
      // After the scope: the file is complete by then (Ctrl-C included).
      Effect.ensuring(Effect.suspend(() => summary === undefined ? Effect.void : Console.error(summary()))),
      Effect.provide(server),
      Effect.provide(upstream),
      Effect.catchTags({
        TransportError: (error) => failWith("record", `cannot listen: ${error.message}`),
        RecordError: (error) => failWith("record", `cannot record: ${error.message}`),
        ViewError: (error) => failWith("record", `cannot serve the view: ${error.message}`)
      })
    ))
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Record a session: a proxy between policies and a robot that forwards every frame unchanged and writes every observation and action, with its receive time, to an MCAP file Foxglove and Lichtblick open as they are. Clients connect to it as to the robot. Runs until Ctrl-C (or SIGTERM, or SIGHUP: the terminal closed), which completes the file."
  ),
  Command.withExamples([
    {
      command: "chiral record --upstream ws://robot:8765 --listen 8766 -o episode.mcap",
      description: "Policies connect to ws://this-machine:8766 instead of the robot"
    },
    {
      command: "chiral record --upstream tcp/robot:7447 --protocol zenoh --listen 7448 -o episode.mcap",
      description: "The same on Zenoh"
    },
    {
      command: "CHIRAL_TOKEN=s3cret chiral record --upstream \"ws://robot:8765/?token=r0b0t\" -o episode.mcap",
      description: "Clients need ws://this-machine:8766/?token=s3cret (without CHIRAL_TOKEN or --token: the robot's own token)"
    },
    {
      command: "chiral record --upstream ws://robot:8765 -o episode.mcap --view-port 8767",
      description: "And watch it live: Foxglove → Open connection → ws://this-machine:8767"
    }
  ])
)
