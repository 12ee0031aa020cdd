/**
 * A transparent proxy between chiral clients and a chiral server, on any
 * transports: for every connection accepted on the `ServerTransport` it opens
 * one connection to the robot through the `ClientTransport` and pipes frames
 * both ways, unchanged (the same bytes, one message for one message). Each
 * direction is its own fiber that awaits each send, as `PolicyServer` does, so
 * actions never wait behind an observation in transit, and a slow client only
 * slows its own answers.
 *
 * Taps (a live view) and the recorder see every forwarded frame with the
 * time it was received (ms since the Unix epoch), after it has been sent on.
 * They must not block: the recorder hands off (moving the frame's buffer when
 * no tap may still hold it, copying it otherwise) and the view keeps only the
 * newest frame; both drop rather than wait.
 *
 * A Zenoh listening side is one shared connection that stands for every
 * client: it gets one upstream connection, as any other.
 */
import { ClientTransport, type Connection, ServerTransport, TransportError } from "@chiral/core"
import { Duration, Effect, Schedule, Stream } from "effect"
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
   * How long to keep trying to reach the robot for a new client before its
   * connection is closed (the robot may be restarting). Default 10 s.
   */
  readonly upstreamTimeout?: Duration.Input | undefined
  /** Called when a client's connection is piped to the robot and when it ends. */
  readonly onConnection?: ((event: "open" | "close", connection: string) => void) | undefined
}

/**
 * Forwards every frame of `from` to `to`, handing each to the taps and then
 * the recorder once sent. The recorder gets a copy: a received frame may be
 * a view into a socket chunk that holds frames still to be forwarded.
 */
const pipe = (
  from: Connection,
  to: Connection,
  direction: Direction,
  id: string,
  taps: ReadonlyArray<Tap>,
  recorder: Recorder | undefined
): Effect.Effect<void, TransportError> =>
  from.frames.pipe(
    Stream.runForEach((frame) => {
      const receivedAt = now()
      return to.send(frame).pipe(
        Effect.andThen(Effect.sync(() => {
          for (const tap of taps) tap(direction, id, frame, receivedAt)
          recorder?.record(direction, id, frame, receivedAt)
        }))
      )
    })
  )

/**
 * Serves the proxy until interrupted. Connection failures end that
 * connection only (logged), as for any `ServerTransport` handler.
 */
export const run = (options: ProxyOptions = {}): Effect.Effect<never, TransportError, ServerTransport | ClientTransport> =>
  Effect.gen(function*() {
    const server = yield* ServerTransport
    const client = yield* ClientTransport
    const taps = options.taps ?? []
    const timeout = Duration.fromInputUnsafe(options.upstreamTimeout ?? Duration.seconds(10))
    const upstream = client.connect.pipe(
      Effect.retry({
        while: (error) => error.reason === "Unavailable",
        schedule: Schedule.spaced(Duration.millis(100))
      }),
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            new TransportError({
              reason: "Unavailable",
              address: client.address,
              detail: `no robot for ${Duration.format(timeout)}: the client's connection is closed`
            })
          )
      })
    )
    return yield* server.serve((downstream) =>
      Effect.gen(function*() {
        const robot = yield* upstream
        const id = downstream.id
        options.onConnection?.("open", id)
        yield* Effect.addFinalizer(() => Effect.sync(() => options.onConnection?.("close", id)))
        yield* Effect.raceFirst(
          pipe(downstream, robot, "c2s", id, taps, options.recorder),
          pipe(robot, downstream, "s2c", id, taps, options.recorder)
        )
      }).pipe(Effect.scoped)
    )
  })
