/**
 * The policy side's observations: the latest one (from any reply), a stream
 * of them as they arrive, and a loop that requests one per tick of a fixed
 * grid so that the latest stays fresh while the policy computes. The loop
 * belongs to the client, not to one connection: when the connection is lost
 * it pauses, and carries on (on a fresh grid) once the client has reconnected.
 *
 * The latest observation belongs to its connection: when the connection is
 * lost it is forgotten, so nothing of a robot that went away (stopped,
 * restarted, replaced) is taken for the one connected next, and
 * `fromEarlierConnection` tells which actions were computed from it.
 */
import type { Observation, ObsTimestamps } from "@chiral/protocol"
import { type Duration, Effect, FiberHandle, Option, PubSub, type Scope, Stream, SubscriptionRef } from "effect"
import * as Cadence from "./Cadence.js"
import type { RequestError } from "./RequestError.js"

export interface ObservationStream {
  /** The most recent observation received on the live connection: none before its first. */
  readonly latest: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  /** Makes `obs` the latest and hands it to the subscribers of `observations`. */
  readonly publish: (obs: Observation) => Effect.Effect<void>
  /** The connection is gone: its observations are forgotten (`latest` becomes none). */
  readonly connectionLost: Effect.Effect<void>
  /**
   * Whether actions stamped `stamps` (camera → capture time, s, as sent) were
   * computed from an observation of an earlier connection, not this one's:
   *  - a timestamp under one of the robot's camera names lies before that
   *    camera's in this connection's first observation, or after it in the
   *    latest (a robot whose clock restarted), so it cannot be this
   *    connection's;
   *  - or this connection has no observation yet while an earlier one had:
   *    a closed-loop policy has then seen nothing of the robot now
   *    connected (unstamped actions included).
   * A client that never observed the robot (open loop) sends as it is told.
   */
  readonly fromEarlierConnection: (stamps: ObsTimestamps | undefined) => boolean
  /**
   * Observations as they arrive. A subscriber that falls behind skips to the
   * newest (only the latest one waits for it), so it never holds old frames.
   */
  readonly observations: Stream.Stream<Observation>
  /**
   * Runs `getObs` every 1/hz s on a fixed grid (`Cadence.fixed`); replaces a
   * running loop. When `getObs` fails with `Disconnected`, the loop waits for
   * `reconnection` (see `Reconnection`) and carries on, or stops.
   */
  readonly start: (
    hz: number,
    getObs: Effect.Effect<Observation, RequestError>,
    reconnection: Reconnection
  ) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
}

/** What a loop that outlives its connection needs to know about the next one. */
export interface Reconnection {
  /** Completes once the client knows its connection is gone (a failed send can come first). */
  readonly awaitDisconnected: Effect.Effect<void>
  /** Whether a new connection will be attempted (once the last one is gone). */
  readonly pending: () => boolean
  /** Waits for a live connection: true once there is one, false if none will follow. */
  readonly awaitConnected: Effect.Effect<boolean>
}

/** `getObs` on the grid for as long as there are connections to run it on. */
const loop = (getObs: Effect.Effect<Observation, RequestError>, period: Duration.Duration, reconnection: Reconnection) =>
  Effect.gen(function*() {
    for (;;) {
      const error = yield* Cadence.untilDisconnected("obs stream", getObs, period)
      yield* reconnection.awaitDisconnected
      if (!reconnection.pending()) return yield* Effect.logInfo(`chiral: obs stream stopped: ${error.message}`)
      yield* Effect.logInfo(`chiral: obs stream paused until the client has reconnected: ${error.message}`)
      if (!(yield* reconnection.awaitConnected)) return yield* Effect.logInfo("chiral: obs stream stopped: no reconnection")
    }
  })

/** The camera timestamps (camera → capture time, s) an action computed from `obs` carries. */
export const timestampsOf = (obs: Option.Option<Observation>): ObsTimestamps => {
  if (Option.isNone(obs)) return {}
  const out: Record<string, number> = {}
  for (const camera of obs.value.cameras) out[camera.name] = camera.timestamp
  return out
}

/**
 * Whether one of `stamps`' camera times lies outside what this connection's
 * observations span, from the first (`first`) to the latest (`latest`);
 * names that are not the robot's cameras are not judged (servers ignore them).
 */
const outsideConnection = (stamps: ObsTimestamps, first: ObsTimestamps, latest: ObsTimestamps): boolean => {
  for (const name in stamps) {
    const t = stamps[name]!
    const from = first[name]
    const to = latest[name]
    if (!Number.isFinite(t) || from === undefined || to === undefined) continue
    if (t < from || t > to) return true
  }
  return false
}

export const make: Effect.Effect<ObservationStream, never, Scope.Scope> =
  Effect.gen(function*() {
    const latest = yield* SubscriptionRef.make(Option.none<Observation>())
    const published = yield* PubSub.sliding<Observation>(1)
    const running = yield* FiberHandle.make()
    // The camera times of this connection's first observation, and whether an earlier connection had any.
    let first: ObsTimestamps | undefined
    let observedEarlier = false
    return {
      latest,
      publish: (obs) =>
        Effect.suspend(() => {
          first ??= timestampsOf(Option.some(obs))
          return Effect.andThen(SubscriptionRef.set(latest, Option.some(obs)), PubSub.publish(published, obs))
        }),
      connectionLost: Effect.suspend(() => {
        if (first !== undefined) observedEarlier = true
        first = undefined
        return SubscriptionRef.set(latest, Option.none())
      }),
      fromEarlierConnection: (stamps) => {
        if (first === undefined) return observedEarlier
        return stamps !== undefined && outsideConnection(stamps, first, timestampsOf(SubscriptionRef.getUnsafe(latest)))
      },
      observations: Stream.fromPubSub(published),
      start: (hz, getObs, reconnection) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) => FiberHandle.run(running)(loop(getObs, period, reconnection))).pipe(
          Effect.asVoid
        ),
      stop: FiberHandle.clear(running)
    }
  })
