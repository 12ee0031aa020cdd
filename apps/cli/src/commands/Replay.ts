import { PolicyServer } from "@chiral/core"
import { stringifyJson } from "@chiral/protocol"
import { Episode, Json, Replay } from "@chiral/record"
import { Console, Effect, Logger, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "../Flags.js"
import { serverTransports } from "../Transports.js"
import { failWith } from "./Decode.js"
import { count } from "./Record.js"

/** One stdout line per action received: what the policy sent beside what was recorded. */
export const actionLine = (c: Replay.ActionComparison): string =>
  stringifyJson(Json.toJsonValue({
    seq: c.seq ?? null,
    index: c.index,
    max_abs_diff: c.maxAbsDiff ?? null,
    action: c.received,
    recorded: c.recorded ?? null
  }))

/**
 * What a recording holding the observations of several client connections
 * is played as, or undefined for one: `chiral record` records every client
 * that passes (a watcher such as `chiral probe --watch` too, and a client's
 * connection after its robot restarted), and replay plays them all as one
 * timeline.
 */
export const severalConnections = (observations: ReadonlyArray<Episode.ObservationEntry>): string | undefined => {
  const counts = new Map<string, number>()
  for (const o of observations) counts.set(o.connection, (counts.get(o.connection) ?? 0) + 1)
  if (counts.size < 2) return undefined
  const each = [...counts].map(([connection, n]) => `${n} from ${connection}`).join(", ")
  return `its observations come from ${counts.size} client connections (${each}), played as one timeline: ` +
    `a client that reconnected (its robot restarted) or another client through the proxy (a watcher: watch with chiral record --view-port instead)`
}

const summaryOf = (stats: Replay.ReplayStats): string =>
  `${count(stats.resets, "reset")}, ${count(stats.observationsServed, "observation")} served, ${
    count(stats.actions, "action")
  } received, ${stats.compared} compared with the recording${
    stats.compared === 0 ? "" : ` (max |Δ| ${stats.maxAbsDiff.toPrecision(4)}, mean of per-action max ${stats.meanAbsDiff.toPrecision(4)})`
  }`

export const replay = Command.make(
  "replay",
  {
    file: Argument.String("file").pipe(Argument.withDescription("An MCAP episode written by chiral record")),
    rate: Flag.Finite("rate").pipe(
      Flag.withDescription("Playback speed: 2 plays twice as fast, 0.5 half as fast (default 1)"),
      Flag.withDefault(1)
    ),
    loop: Flag.Boolean("loop").pipe(
      Flag.withDescription("When an episode segment ends, play it again from its reset instead of holding its last observation"),
      Flag.withDefault(false)
    ),
    port: Flags.serverPort,
    host: Flags.host(),
    protocol: Flags.serverProtocol(),
    keyPrefix: Flags.keyPrefix("the robot's", { why: Flags.sharedNetwork }),
    token: Flags.token()
  },
  Effect.fnUntraced(function*(flags) {
    if (!(flags.rate > 0 && Number.isFinite(flags.rate))) return yield* failWith("replay", `--rate ${flags.rate}: expected a positive number`)
    const port = Option.getOrUndefined(flags.port)
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
      return yield* failWith("replay", `--port ${port}: expected a port from 0 to 65535`)
    }
    const keyPrefix = Option.getOrUndefined(flags.keyPrefix)
    if (keyPrefix !== undefined && flags.protocol !== "zenoh") return yield* failWith("replay", "--key-prefix applies to --protocol zenoh only")
    const resolved = yield* Flags.tokenOf(flags.token, flags.protocol)
    if ("error" in resolved) return yield* failWith("replay", resolved.error)
    const token = resolved.token

    let summary: (() => string) | undefined
    yield* Effect.gen(function*() {
      const episode = yield* Episode.open(flags.file)
      if (episode.incomplete !== undefined) {
        yield* Console.error(`chiral replay: warning: ${Episode.incompleteWarning(flags.file, episode.incomplete)}`)
      }
      if (episode.observations.length === 0) return yield* failWith("replay", `${flags.file}: the recording has no observations`)
      const mixed = severalConnections(episode.observations)
      if (mixed !== undefined) yield* Console.error(`chiral replay: warning: ${flags.file}: ${mixed}`)
      const replayer = Replay.make(episode, {
        rate: flags.rate,
        loop: flags.loop,
        onAction: (c) => Console.log(actionLine(c))
      })
      summary = () => `chiral replay: ${summaryOf(replayer.stats())}`
      const server = yield* PolicyServer.make({ handlers: replayer.handlers })
      const segments = Replay.segmentsOf(episode.observations).length
      yield* Console.error(
        `chiral replay: listening on ${server.address} (${flags.file}: ${episode.observations.length} observations in ${segments} segment${
          segments === 1 ? "" : "s"
        }, ${episode.actions.length} recorded actions, rate ${flags.rate}${flags.loop ? ", looping" : ""}${
          token === undefined ? "" : ", token required"
        })`
      )
      return yield* Effect.never
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.suspend(() => summary === undefined ? Effect.void : Console.error(summary()))),
      Effect.provide(serverTransports[flags.protocol]({ host: flags.host, port, keyPrefix, webSocket: { token } })),
      Effect.catchTags({
        TransportError: (error) => failWith("replay", `cannot listen: ${error.message}`),
        RecordError: (error) => failWith("replay", `cannot read the recording: ${error.message}`),
        ConfigError: (error) => failWith("replay", error.message)
      })
    )
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Serve a recorded episode as a robot, to test a policy offline against real data: metadata, reset and observations as recorded, in recorded order and timing (at --rate). Prints one JSON line per action received on stdout, beside the action recorded for the same observation: {seq, index, max_abs_diff, action, recorded}. Runs until Ctrl-C."
  ),
  Command.withExamples([
    { command: "chiral replay episode.mcap", description: "Serve it on ws://0.0.0.0:8765, where the policy expects the robot" },
    { command: "chiral replay episode.mcap --rate 0.5 --loop --port 9000 > actions.jsonl", description: "Half speed, looping, actions compared into a file" }
  ])
)
