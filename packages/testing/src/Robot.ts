// A small simulated robot for the tests: two cameras (one with depth), one
// proprio, handlers that record what they receive.
import type { Tensor } from "@chiral/protocol"
import { Cause, Clock, Effect, Logger, Queue, Ref } from "effect"
import { type ActionContext, type Handlers, PolicyServer } from "@chiral/core"

export const cameras = [
  { name: "wrist", height: 4, width: 6, channels: 3, hasDepth: true },
  { name: "scene", height: 2, width: 3, channels: 3, intrinsics: [[600, 0, 1.5], [0, 600, 1], [0, 0, 1]] }
] as const

export const proprios = [{ name: "joint_pos", size: 7 }] as const

export interface Applied {
  readonly action: Tensor
  readonly context: ActionContext
  /** Arrival time at the server (Clock millis: virtual under TestClock). */
  readonly at: number
}

export interface Recorder {
  readonly actions: Queue.Queue<Applied>
  readonly obsRequests: Ref.Ref<ReadonlyArray<number>>
  readonly resets: Ref.Ref<number>
}

export const makeRecorder = Effect.gen(function*() {
  return {
    actions: yield* Queue.unbounded<Applied>(),
    obsRequests: yield* Ref.make<ReadonlyArray<number>>([]),
    resets: yield* Ref.make(0)
  } satisfies Recorder
})

/**
 * Handlers tagging each observation with where it came from, so a test can
 * tell a reset's answer from an obs_request's.
 */
export const handlers = (
  recorder: Recorder,
  options: {
    /** How long the n-th getObs (from 1) takes, on the Clock. */
    readonly obsDelayMillis?: number | ((n: number) => number) | undefined
    /** What the n-th getObs (from 1) waits for before it answers: a robot that is silent until the test says. */
    readonly holdObs?: ((n: number) => Effect.Effect<void>) | undefined
  } = {}
): Handlers<never, PolicyServer.PolicyServer> => ({
  getMetadata: Effect.succeed({ action_shape: [7], cameras: cameras.map((c) => c.name) }),
  reset: Effect.gen(function*() {
    const server = yield* PolicyServer.PolicyServer
    const episode = yield* Ref.updateAndGet(recorder.resets, (n) => n + 1)
    const obs = yield* server.makeObs({ extra: { source: "reset", episode } })
    return { obs, info: { episode } }
  }),
  getObs: Effect.gen(function*() {
    const server = yield* PolicyServer.PolicyServer
    const at = yield* Clock.currentTimeMillis
    const n = (yield* Ref.updateAndGet(recorder.obsRequests, (list) => [...list, at])).length
    const delay = typeof options.obsDelayMillis === "function" ? options.obsDelayMillis(n) : options.obsDelayMillis
    if (delay !== undefined && delay > 0) yield* Effect.sleep(delay)
    if (options.holdObs !== undefined) yield* options.holdObs(n)
    return yield* server.makeObs({ extra: { source: "get_obs", n } })
  }),
  applyAction: (action, context) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => Queue.offer(recorder.actions, { action, context, at }))
})

/** Collects log messages (as text) so a test can assert what was logged. */
export const captureLogs = Effect.gen(function*() {
  const lines: Array<string> = []
  const logger = Logger.make((options) => {
    const message = Array.isArray(options.message) ? options.message.join(" ") : String(options.message)
    const cause = options.cause.reasons.length > 0 ? ` ${Cause.pretty(options.cause)}` : ""
    lines.push(`${options.logLevel}: ${message}${cause}`)
  })
  return { lines, layer: Logger.layer([logger]) }
})
