/**
 * The flags several commands share, each defined once: where a command
 * listens (--host, --port, --protocol, --key-prefix) or which transport it
 * connects with, the simulated robot's cameras (--cameras, --size, --depth),
 * and the limits on what is read (--max-message-size, --max-header-bytes,
 * --max-depth); with the parsing of their values. What differs between two
 * commands (whose key prefix, a default) is a parameter, so their `--help`
 * says the same thing the same way.
 */
import type { DecodeLimits } from "@chiral/protocol"
import { Config, Effect, Option } from "effect"
import { Flag } from "effect/cli"
import { parseByteSize } from "./ByteSize.js"
import * as RobotThread from "./RobotThread.js"
import * as SimulatedRobot from "./SimulatedRobot.js"
import { defaultPorts, type Protocol, protocols } from "./Transports.js"

// ── where a command listens, or what it connects with ────────────────────────

/**
 * `--host`: the interface to listen on; `subject` says whose ("Interface the
 * view listens on"), `byDefault` where without the flag (0.0.0.0, as the
 * references' robots; 127.0.0.1 for what need not leave this machine).
 */
export const host = (subject = "Interface to listen on", byDefault: "0.0.0.0" | "127.0.0.1" = "0.0.0.0") =>
  Flag.String("host").pipe(
    Flag.withDescription(`${subject}: 0.0.0.0 every interface, 127.0.0.1 this machine only (default ${byDefault})`),
    Flag.withDefault(byDefault)
  )

/** `--port`/`-p` of a chiral server: each protocol's default port unless given. */
export const serverPort = Flag.Int("port").pipe(
  Flag.withAlias("p"),
  Flag.withDescription(
    `Port to listen on; 0 picks a free one, the address printed says which (default ${defaultPorts.websocket}, ${defaultPorts.zenoh} with --protocol zenoh)`
  ),
  Flag.optional
)

/**
 * `--protocol` of a command that listens (default websocket); `subject` says
 * for whom ("Transport clients use to reach the proxy"), `note` what follows.
 */
export const serverProtocol = (subject = "Transport", note = "") =>
  Flag.Literals("protocol", protocols).pipe(
    Flag.withDescription(
      `${subject}: websocket (ws://host:port) or zenoh (a Zenoh peer listening on tcp/host:port, keys chiral/c2s and chiral/s2c, as the references) (default websocket)${note}`
    ),
    Flag.withDefault("websocket")
  )

/** `--protocol` of a command given a URI, which says it unless the flag is given; `subject`: "Transport to the robot". */
export const uriProtocol = (subject = "Transport") =>
  Flag.Literals("protocol", protocols).pipe(
    Flag.withDescription(`${subject}; by default the URI's form says (ws:// WebSocket, tcp/ Zenoh)`),
    Flag.optional
  )

/**
 * A Zenoh key prefix, `--key-prefix` unless `name` says another: `whose`
 * ("the robot's"), and `why` one would set it.
 */
export const keyPrefix = (whose: string, options: { readonly name?: string; readonly why?: string } = {}) =>
  Flag.String(options.name ?? "key-prefix").pipe(
    Flag.withDescription(
      `Zenoh only: ${whose} key prefix: keys <prefix>/chiral/c2s and <prefix>/chiral/s2c${options.why ?? ""} (the references use none)`
    ),
    Flag.optional
  )

/** Why a robot sets a key prefix. */
export const sharedNetwork = ", so several robots can share one Zenoh network"

/**
 * `--token` of a command that listens: the access token its WebSocket server
 * requires. `fallback` says what it defaults to after CHIRAL_TOKEN, if
 * anything ("the --upstream URI's token"); `who` who must present it
 * (default "WebSocket only: clients"), `note` what else it is for.
 */
export const token = (fallback?: string, options: { readonly who?: string; readonly note?: string } = {}) =>
  Flag.String("token").pipe(
    Flag.withDescription(
      `${
        options.who ?? "WebSocket only: clients"
      } must present this token (ws://host:port/?token=T or Authorization: Bearer T), others get HTTP 401${
        options.note ?? ""
      }. Default: the CHIRAL_TOKEN environment variable, else ${fallback === undefined ? "none" : `${fallback}, else none`}`
    ),
    Flag.withMetavar("T"),
    Flag.optional
  )

/**
 * The token a listening command requires: `--token`, else CHIRAL_TOKEN, else
 * `fallback`; or why it cannot be used. A token the user set is refused on
 * Zenoh rather than dropped: Zenoh has no access token, and serving without
 * the protection asked for is worse than not serving.
 */
export const tokenOf = (
  flag: Option.Option<string>,
  protocol: Protocol,
  fallback?: string | undefined
): Effect.Effect<{ readonly token: string | undefined } | { readonly error: string }> =>
  Effect.gen(function*() {
    const env = yield* Config.option(Config.String("CHIRAL_TOKEN")).pipe(Effect.orElseSucceed(() => Option.none()))
    const given = Option.getOrUndefined(flag) ?? Option.getOrUndefined(env)
    if (given === "") return { error: "--token: the token is empty" }
    if (given !== undefined && protocol === "zenoh") {
      return {
        error: Option.isSome(flag)
          ? "--token applies to --protocol websocket only: Zenoh's protocol has no access token"
          : "CHIRAL_TOKEN is set, and a token applies to --protocol websocket only: Zenoh's protocol has no access token (unset it to serve Zenoh)"
      }
    }
    return { token: given ?? (protocol === "websocket" ? fallback : undefined) }
  })

// ── the simulated robot's cameras ────────────────────────────────────────────

export const cameras = Flag.Int("cameras").pipe(
  Flag.withDescription(`Cameras of the simulated robot, named cam_0, cam_1, … (default ${SimulatedRobot.defaults.cameras})`),
  Flag.withDefault(SimulatedRobot.defaults.cameras)
)

const defaultSize = `${SimulatedRobot.defaults.width}x${SimulatedRobot.defaults.height}`

/** `--size WIDTHxHEIGHT`, read with `parseSize`. */
export const size = Flag.String("size").pipe(
  Flag.withDescription(`Image size WIDTHxHEIGHT, RGB uint8 (default ${defaultSize})`),
  Flag.withDefault(defaultSize)
)

/** `640x480` → {width, height}, or why not. */
export const parseSize = (text: string): { readonly width: number; readonly height: number } | string => {
  const match = /^\s*(\d+)\s*[xX×]\s*(\d+)\s*$/.exec(text)
  if (match === null) return `--size ${JSON.stringify(text)}: expected WIDTHxHEIGHT, e.g. 640x480`
  const width = Number(match[1])
  const height = Number(match[2])
  if (width < 1 || height < 1 || width > 16384 || height > 16384) {
    return `--size ${text}: width and height must be between 1 and 16384`
  }
  return { width, height }
}

/** `--depth`, on or off unless given (`--no-depth` turns it off). */
export const depth = (byDefault: boolean) =>
  Flag.Boolean("depth").pipe(
    Flag.withDescription(
      byDefault
        ? "Give every camera a float32 depth image in metres (default; --no-depth: RGB only)"
        : "Give every camera a float32 depth image (metres)"
    ),
    Flag.withDefault(byDefault)
  )

// ── limits on what is read ───────────────────────────────────────────────────

/** `--max-message-size` of a server: the largest message a client may send. */
export const serverMaxMessageSize = Flag.String("max-message-size").pipe(
  Flag.withDescription(
    "Largest message a client may send, e.g. 64MiB: a bigger one ends that client's connection (WebSocket 1009) or Zenoh session (default 16MiB: clients send only requests and actions)"
  ),
  Flag.optional
)

/** `--max-message-size` of a Zenoh client: the largest message it reassembles. */
export const clientMaxMessageSize = Flag.String("max-message-size").pipe(
  Flag.withDescription("Zenoh only: the largest message the client accepts, e.g. 2GiB (default 1GiB, as Rust Zenoh)"),
  Flag.optional
)

/** The bytes `--max-message-size` gives, undefined when not given, or why it is not a size. */
export const maxMessageBytesOf = (flag: Option.Option<string>): number | undefined | string =>
  Option.match(flag, {
    onNone: () => undefined,
    onSome: (text) => parseByteSize("max-message-size", text)
  })

/** `--max-header-bytes` and `--max-depth`: what a client decodes from a server. */
export const decodeLimits = {
  maxHeaderBytes: Flag.Int("max-header-bytes").pipe(
    Flag.withDescription(
      "Largest msgpack header accepted from the server, bytes (default: no limit beyond the wire's 4 GiB, as the Python client)"
    ),
    Flag.optional
  ),
  maxDepth: Flag.Int("max-depth").pipe(
    Flag.withDescription("Deepest nesting accepted in a server's header (default 1024, the Python msgpack reader's limit)"),
    Flag.optional
  )
}

/** The client's decode limits from those flags, or what is wrong with them. */
export const decodeLimitsOf = (
  flags: { readonly maxHeaderBytes: Option.Option<number>; readonly maxDepth: Option.Option<number> }
): Partial<DecodeLimits> | string => {
  const limits: { maxHeaderBytes?: number; maxDepth?: number } = {}
  if (Option.isSome(flags.maxHeaderBytes)) {
    const n = flags.maxHeaderBytes.value
    if (!(n >= 1 && n <= 0xffff_ffff)) return `--max-header-bytes ${n}: expected an integer from 1 to 4294967295`
    limits.maxHeaderBytes = n
  }
  if (Option.isSome(flags.maxDepth)) {
    const n = flags.maxDepth.value
    if (!(n >= 1 && n <= 100_000)) return `--max-depth ${n}: expected an integer from 1 to 100000`
    limits.maxDepth = n
  }
  return limits
}

// ── how a robot's thread is scheduled ────────────────────────────────────────

/**
 * `--priority` (or `name`): how far a robot process raises its main thread,
 * the one where every action reaches the robot's handler (`RobotThread`).
 * Optional, so that a command can refuse it where it does not apply; without
 * it, normal.
 */
export const robotPriority = (name = "priority", note = "") =>
  Flag.Literals(name, RobotThread.priorities).pipe(
    Flag.withDescription(
      `Scheduling of the robot's main thread, where actions reach its handler and all its other work runs too (sensors, replies, handlers): normal (default), nice (the lowest nice value allowed), or realtime (SCHED_FIFO 1, the lowest real-time level, this thread only; else nice). On a machine the robot shares with a policy, an action then waits less for a core, and all of that thread's work runs ahead of the policy's: for a robot whose loop blocks between its events. Needs root, CAP_SYS_NICE, or an allowance (ulimit -r for realtime, -e for nice); the line printed at start says what the thread got${note}`
    ),
    Flag.optional
  )
