/**
 * A transparent proxy between chiral clients and a chiral server, on any
 * transports: every connection accepted on the `ServerTransport` is a
 * passage tied to ONE connection to the robot, opened for it through the
 * `ClientTransport`; frames are piped both ways, unchanged (the same bytes,
 * one message for one message). Each direction is its own fiber that awaits
 * each send, as `PolicyServer` does, so actions never wait behind an
 * observation in transit, and a slow client only slows its own answers.
 *
 * A passage lives exactly as long as both of its connections. When the
 * robot's ends, the client's is ended too (a WARN says so, with what the
 * client sent that was not forwarded), and the client reconnects by itself
 * to get a new passage: nothing a client sent is ever forwarded on a robot
 * connection other than the one it was sent for, so no action outlives its
 * connection here any more than without the proxy.
 *
 * A new client's connection is held while the robot connection is being
 * opened, `upstreamTimeout` at most (default 2 s, trying again every 100 ms
 * while nobody answers: the robot may be restarting); then it is ended. One
 * WARN per outage says so. Meanwhile requests from the client wait (in
 * order). Of its actions only the newest waits, less than
 * `maxHeldActionAge` (default 100 ms), and only while the robot answers: a
 * client acts as soon as its own connection is open, while the robot's is
 * still being opened for it, but an action that waited longer would reach
 * the robot late, and one sent while no robot answered was computed for a
 * robot that is not the one that comes up. The others are dropped, counted
 * and logged. A legacy `action` (which is answered) ends the passage
 * instead, since its answer would never come.
 *
 * Where the transport can say why (`Connection.close`: WebSocket), the
 * client's connection is closed with 1011 and "the robot connection was
 * lost", or 1013 (try again later) and "no robot answers", or 1008 and "the
 * robot refused the proxy's connection" when the robot turns the proxy away
 * (`Refused`: an HTTP 401 for a missing or wrong token, say). A robot that
 * closed its connection saying why (a WebSocket close with a code other than
 * 1000, 1001, 1005: a failed handler's 1011 "chiral: reset failed: …") has
 * its code and reason passed on instead, so the client learns what it would
 * have without the proxy.
 *
 * When recording, the proxy asks the robot for its metadata first on each
 * robot connection and records the answer without forwarding it; the robot
 * answers requests in order, so the client's own requests, sent after it,
 * get their own answers.
 *
 * Taps (a live view) and the recorder see every forwarded frame with the
 * time it was received (ms since the Unix epoch), after it has been sent on.
 * They must not block: the recorder hands off (moving the frame's buffer when
 * no tap may still hold it, copying it otherwise) and the view keeps only the
 * newest frame; both drop rather than wait.
 *
 * A Zenoh listening side gives one connection per Zenoh session: a client's
 * own session is closed when its passage ends. A router's session stands for
 * every client behind it (`shared`) and is never closed by the transport:
 * once its robot connection is lost, nothing more is forwarded for it.
 */
import {
  ClientTransport,
  closeWith,
  CloseReason,
  type Connection,
  ConnectTimeout,
  type PeerClose,
  ServerTransport,
  type TransportError
} from "@chiral/core"
import { decodeFrame, encodeFrame, warmYoungGeneration } from "@chiral/protocol"
import { Clock, Duration, Effect, Result, Schedule, type Scope, Stream } from "effect"
import type { Direction, Frame, Recorder } from "./Recorder.js"
import { now } from "./Recorder.js"

/** Sees each forwarded frame; must return at once. */
export type Tap = (direction: Direction, connection: string, frame: Frame, receivedAt: number) => void

export interface ProxyOptions {
  /** Where frames are recorded; handed each frame after the taps. */
  readonly recorder?: Recorder | undefined
  /** Others that see each frame (a live view); they may keep references to it. */
  readonly taps?: ReadonlyArray<Tap> | undefined
  /**
   * How long a new client's connection is held while the proxy tries to
   * reach the robot for it (an attempt every 100 ms while nobody answers),
   * before it is ended (1013, try again later). Default 2 s. A `PolicyClient`
   * takes that end as a failed attempt and backs off; a client that
   * reconnects at once after a connection that ends has its attempts spaced
   * by this while the robot is down.
   */
  readonly upstreamTimeout?: Duration.Input | undefined
  /**
   * The newest action a client sent before its robot connection was open is
   * forwarded once it is if it waited less than this and the robot answered
   * the proxy's first attempt, with no outage before (no client turned away
   * for want of a robot since it last answered); older ones, and this one
   * otherwise, are dropped. Default 100 ms, an action's period at 10 Hz: a client sends its
   * first action as soon as its own connection is open, and opening the robot
   * connection for it took 23–84 ms over Zenoh with an 8-camera stream
   * through the proxy (`chiral record`, a 2-core machine). 0 drops every
   * action sent before.
   */
  readonly maxHeldActionAge?: Duration.Input | undefined
  /**
   * Ask the robot for its metadata on each robot connection, before any of
   * the client's frames, and record the answer (not forwarded). Default: true
   * when there is a recorder.
   */
  readonly recordMetadata?: boolean | undefined
  /** Called when a client's connection is piped to the robot and when it ends. */
  readonly onConnection?: ((event: "open" | "close", connection: string) => void) | undefined
}

/** The default `upstreamTimeout`. */
export const defaultUpstreamTimeout: Duration.Duration = Duration.seconds(2)

/** The default `maxHeldActionAge`. */
export const defaultMaxHeldActionAge: Duration.Duration = Duration.millis(100)

/** Pause between attempts to reach the robot for one client. */
const retryInterval = Duration.millis(100)

/**
 * Failures worth another attempt within `upstreamTimeout`: nobody answers
 * (the robot is restarting), or something accepted but never completed the
 * handshake. Others (a wrong address, a refused token) end the client's
 * connection at once.
 */
const retried: ReadonlySet<TransportError["reason"]> = new Set(["Unavailable", "Silent"])

/**
 * Requests a client may send before its robot connection is open; more ends
 * its connection. A client waits for each answer (ours holds one request at
 * a time), so only a broken one comes near this.
 */
const maxHeldRequests = 64

/** Why a passage ended: its client's connection or its robot's. */
interface Ending {
  readonly side: "client" | "robot"
  readonly why: string
  /** The close the robot sent, when it ended its connection saying why (WebSocket): passed on to the client. */
  readonly closedBy?: PeerClose | undefined
  /** The robot turned the proxy's connection away (`Refused`: an HTTP 401 for a missing or wrong token, say). */
  readonly refused?: boolean | undefined
}

interface Held {
  readonly frame: Uint8Array
  /** Wall-clock ms, for the recording. */
  readonly receivedAt: number
  /** An action held before the robot connection was open: when it arrived, by the Effect clock (ms). */
  readonly actionSince?: number | undefined
}

interface Passage {
  readonly id: string
  /** The robot connection is open: the client's frames are no longer judged by the hold's rules. */
  opened: boolean
  /** Set once what was held has been sent: from then on frames go straight through. */
  robot: Connection | undefined
  /** Client frames received before `robot` was set, in order. */
  readonly held: Array<Held>
  /** Client frames (and, of them, actions) never sent to the robot. */
  unforwarded: number
  unforwardedActions: number
  /** Of those, actions dropped because they came before the robot connection was open. */
  actionsBeforeOpen: number
}

const messageType = (frame: Uint8Array): string | undefined => {
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : undefined
}

const isAction = (type: string | undefined) => type === "apply_action" || type === "action"

const notForwarded = (passage: Passage, frame: Uint8Array) => {
  passage.unforwarded++
  if (isAction(messageType(frame))) passage.unforwardedActions++
}

const metadataRequest = encodeFrame({ type: "metadata" })

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

const dropBeforeOpen = (passage: Passage, frame: Uint8Array) => {
  notForwarded(passage, frame)
  passage.actionsBeforeOpen++
}

/** Where in `held` the one action held waits (the newest sent before the robot connection was open), or -1. */
const heldActionAt = (passage: Passage): number => passage.held.findIndex((held) => held.actionSince !== undefined)

/** Holds `action` in place of the action held before it, which is dropped: only the newest may be forwarded. */
const holdNewest = (passage: Passage, action: Held) => {
  const older = heldActionAt(passage)
  if (older >= 0) dropBeforeOpen(passage, passage.held.splice(older, 1)[0]!.frame)
  passage.held.push(action)
}

/**
 * Whether an action held while the robot connection opened is dropped rather
 * than forwarded: it waited `maxHeldActionAge` (ms) or longer, or it was sent
 * while no robot answered (`noRobot`), so computed for a robot that is not
 * the one that came up.
 */
export const heldTooLong = (since: number, now: number, maxHeldActionAge: number, noRobot: boolean): boolean =>
  noRobot || now - since >= maxHeldActionAge

/**
 * "3 frames it sent were not forwarded (2 actions)", or that all were. Not
 * "nothing was lost": what was written to a robot connection that then broke
 * may never have been read by the robot, and the proxy cannot tell.
 */
const lossOf = (passage: Passage) =>
  passage.unforwarded === 0
    ? passage.opened ? "all it sent was forwarded (the robot may not have read the last of it)" : "it sent nothing"
    : `${plural(passage.unforwarded, "frame")} it sent ${passage.unforwarded === 1 ? "was" : "were"} not forwarded (${
      plural(passage.unforwardedActions, "action")
    })`

/**
 * Serves the proxy until interrupted. A passage's end is logged and ends
 * only that passage; the error is the listening side's (`Listen`).
 */
export const run = (options: ProxyOptions = {}): Effect.Effect<never, TransportError, ServerTransport | ClientTransport> =>
  Effect.gen(function*() {
    const server = yield* ServerTransport
    const client = yield* ClientTransport
    const taps = options.taps ?? []
    const recorder = options.recorder
    const askMetadata = options.recordMetadata ?? recorder !== undefined
    const timeout = Duration.fromInputUnsafe(options.upstreamTimeout ?? defaultUpstreamTimeout)
    const maxHeldActionAge = Duration.toMillis(Duration.fromInputUnsafe(options.maxHeldActionAge ?? defaultMaxHeldActionAge))
    const clock = yield* Clock.Clock
    // Before the first frame passes (see `warmYoungGeneration`), as a server does.
    warmYoungGeneration()
    // One WARN per outage, not one per refused client (they retry every second or so).
    let outage: { refused: number } | undefined

    const seen = (direction: Direction, id: string, frame: Uint8Array, receivedAt: number) =>
      Effect.sync(() => {
        for (const tap of taps) tap(direction, id, frame, receivedAt)
        recorder?.record(direction, id, frame, receivedAt)
      })

    const robotLost = (error: TransportError): Ending => ({
      side: "robot",
      why: error.message,
      closedBy: error.closedBy,
      refused: error.reason === "Refused"
    })

    const toRobot = (passage: Passage, robot: Connection, frame: Uint8Array, receivedAt: number) =>
      robot.send(frame).pipe(
        Effect.mapError((error) => {
          notForwarded(passage, frame)
          return robotLost(error)
        }),
        Effect.andThen(seen("c2s", passage.id, frame, receivedAt))
      )

    /** The client's frames, from its connection's start: held, dropped or forwarded (see the module's rules). */
    const fromClient = (passage: Passage, downstream: Connection): Effect.Effect<Ending> =>
      downstream.frames.pipe(
        Stream.runForEach((frame): Effect.Effect<void, Ending> => {
          const receivedAt = now()
          if (passage.robot !== undefined) return toRobot(passage, passage.robot, frame, receivedAt)
          if (!passage.opened) {
            const type = messageType(frame)
            if (type === "action") {
              dropBeforeOpen(passage, frame)
              return Effect.fail({
                side: "client",
                why: "it sent a legacy action before its robot connection was open (dropped: its answer would never come)"
              })
            }
            if (type === "apply_action") {
              // Held in this same step, with no effect between the checks above and
              // the store: the robot connection's opening empties `held` and sets
              // `robot` in a step of its own, which must not fall in between.
              holdNewest(passage, { frame, receivedAt, actionSince: clock.currentTimeMillisUnsafe() })
              return Effect.void
            }
            if (passage.held.length - (heldActionAt(passage) >= 0 ? 1 : 0) >= maxHeldRequests) {
              notForwarded(passage, frame)
              return Effect.fail({
                side: "client",
                why: `it sent more than ${maxHeldRequests} requests before its robot connection was open`
              })
            }
          }
          passage.held.push({ frame, receivedAt })
          return Effect.void
        }),
        Effect.match({
          onSuccess: (): Ending => ({ side: "client", why: "the client closed its connection" }),
          onFailure: (error): Ending => "side" in error ? error : { side: "client", why: error.message }
        })
      )

    /** The robot's frames to the client; the first answers the proxy's own metadata request when `askMetadata`. */
    const fromRobot = (passage: Passage, robot: Connection, downstream: Connection): Effect.Effect<Ending> => {
      let ownAnswer = askMetadata
      return robot.frames.pipe(
        Stream.runForEach((frame): Effect.Effect<void, Ending> => {
          const receivedAt = now()
          if (ownAnswer) {
            ownAnswer = false
            const type = messageType(frame)
            if (type !== "metadata_response") {
              // Forwarding it would hand the client an answer to a request it never made.
              return Effect.fail({ side: "robot", why: `it answered the proxy's metadata request with ${type ?? "an undecodable frame"}` })
            }
            recorder?.record("s2c", passage.id, frame, receivedAt)
            return Effect.void
          }
          return downstream.send(frame).pipe(
            Effect.mapError((error): Ending => ({ side: "client", why: error.message })),
            Effect.andThen(seen("s2c", passage.id, frame, receivedAt))
          )
        }),
        Effect.match({
          onSuccess: (): Ending => ({ side: "robot", why: "the robot closed the connection" }),
          onFailure: (error): Ending => "side" in error ? error : robotLost(error)
        })
      )
    }

    /** Opens the passage's robot connection, sends what was held, then pipes the robot's frames. */
    const throughRobot = (passage: Passage, downstream: Connection): Effect.Effect<Ending, never, Scope.Scope> =>
      Effect.gen(function*() {
        // The last failed attempt: none when the robot answered the first.
        let last: TransportError | undefined
        const robot = yield* client.connect.pipe(
          // The transport's own handshake timeout is shortened to ours.
          Effect.provideService(ConnectTimeout, timeout),
          Effect.tapError((error) => Effect.sync(() => void (last = error))),
          Effect.retry({ while: (error) => retried.has(error.reason), schedule: Schedule.spaced(retryInterval) }),
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail({
                side: "robot",
                why: last === undefined
                  ? `no answer within ${Duration.format(timeout)}`
                  : `${last.message}, for ${Duration.format(timeout)}`
              } satisfies Ending)
          }),
          Effect.mapError((error): Ending => "side" in error ? error : robotLost(error))
        )
        passage.opened = true
        // Sent while no robot answered, for this client or for one before it
        // (a client turned away in the outage that reconnected as it ended).
        const noRobot = last !== undefined || outage !== undefined
        if (outage !== undefined) {
          yield* Effect.logInfo(
            `chiral record: ${client.address} answers again (${plural(outage.refused, "client connection")} ended meanwhile)`
          )
          outage = undefined
        }
        options.onConnection?.("open", passage.id)
        yield* Effect.addFinalizer(() => Effect.sync(() => options.onConnection?.("close", passage.id)))
        if (askMetadata) yield* Effect.mapError(robot.send(metadataRequest), robotLost)
        while (passage.held.length > 0) {
          const { actionSince, frame, receivedAt } = passage.held.shift()!
          if (actionSince !== undefined && heldTooLong(actionSince, clock.currentTimeMillisUnsafe(), maxHeldActionAge, noRobot)) {
            dropBeforeOpen(passage, frame)
          } else {
            yield* toRobot(passage, robot, frame, receivedAt)
          }
        }
        // No yield since `held` was found empty: nothing can slip in between.
        passage.robot = robot
        if (passage.actionsBeforeOpen > 0) {
          yield* Effect.logWarning(
            `chiral record: ${passage.id}: dropped ${
              plural(passage.actionsBeforeOpen, "action")
            } it sent before its robot connection was open (only the newest may wait for it, less than ${
              Duration.format(Duration.millis(maxHeldActionAge))
            }, and only while the robot answers)`
          )
        }
        return yield* fromRobot(passage, robot, downstream)
      }).pipe(Effect.catch((ending) => Effect.succeed(ending)))

    return yield* server.serve((downstream) =>
      Effect.gen(function*() {
        const passage: Passage = {
          id: downstream.id,
          opened: false,
          robot: undefined,
          held: [],
          unforwarded: 0,
          unforwardedActions: 0,
          actionsBeforeOpen: 0
        }
        const ending = yield* Effect.raceFirst(fromClient(passage, downstream), throughRobot(passage, downstream))
        if (ending.side === "client") return
        for (const { frame } of passage.held) notForwarded(passage, frame)
        // 1013 try again later: no robot yet; 1008 when the robot turns the proxy
        // away (its client is refused as the robot would refuse it); the robot's
        // own close when it said why (its client would have seen it without the
        // proxy); else 1011.
        yield* !passage.opened
          ? ending.refused === true
            ? closeWith(downstream, CloseReason.policyViolation, "chiral record: the robot refused the proxy's connection")
            : closeWith(downstream, CloseReason.tryAgainLater, "chiral record: no robot answers")
          : ending.closedBy !== undefined
          ? closeWith(downstream, ending.closedBy.code, ending.closedBy.reason)
          : closeWith(downstream, CloseReason.internalError, "chiral record: the robot connection was lost")
        if (!passage.opened) {
          const first = outage === undefined
          outage = { refused: (outage?.refused ?? 0) + 1 }
          const line = `chiral record: ${
            ending.refused === true ? `the robot at ${client.address} refused the proxy's connection` : `no robot at ${client.address}`
          } (${ending.why}): ended ${passage.id} (${lossOf(passage)})`
          return yield* first
            ? Effect.logWarning(`${line}; every client's connection is ended the same way until the robot ${
              ending.refused === true ? "lets the proxy in" : "answers"
            }`)
            : Effect.logDebug(line)
        }
        yield* Effect.logWarning(
          `chiral record: lost the robot connection of ${passage.id} (${ending.why}): ended that client's connection; ${lossOf(passage)}`
        )
      }).pipe(Effect.scoped)
    )
  })
