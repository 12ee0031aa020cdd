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
 * `fromEarlierConnection` tells the actions it can show were computed from
 * an earlier connection's observation.
 */
import { Observation, type ObsTimestamps } from "@chiral/protocol"
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
   * Why actions stamped `stamps` (camera → capture time, s, as sent) were
   * computed from an observation of an earlier connection, not this one's;
   * undefined when they may be this connection's:
   *  - this connection has no observation yet while an earlier one had: a
   *    closed-loop policy has then seen nothing of the robot now connected
   *    (unstamped actions included);
   *  - a timestamp under one of the robot's camera names lies before that
   *    camera's first frame on this connection (or the camera has sent none
   *    yet), or after its latest (a robot whose clock restarted).
   * A timestamp of 0 (a camera that had no frame) and names that are not the
   * robot's cameras are not judged; nor is a client that never observed the
   * robot (open loop), which sends as it is told. Unstamped actions are judged
   * only until this connection's first observation: once there is one, they
   * carry its stamps (see `ActionDispatcher`).
   */
  readonly fromEarlierConnection: (stamps: ObsTimestamps | undefined) => string | undefined
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
  /** Whether the connection lost was refused by the server for a reason said already (a pause then is a debug line). */
  readonly refusedAgain: () => boolean
}

/** `getObs` on the grid for as long as there are connections to run it on. */
const loop = (getObs: Effect.Effect<Observation, RequestError>, period: Duration.Duration, reconnection: Reconnection) =>
  Effect.gen(function*() {
    for (;;) {
      const error = yield* Cadence.untilDisconnected("obs stream", getObs, period)
      yield* reconnection.awaitDisconnected
      if (!reconnection.pending()) return yield* Effect.logInfo(`chiral: obs stream stopped: ${error.message}`)
      const log = reconnection.refusedAgain() ? Effect.logDebug : Effect.logInfo
      yield* log(`chiral: obs stream paused until the client has reconnected: ${error.message}`)
      if (!(yield* reconnection.awaitConnected)) return yield* Effect.logInfo("chiral: obs stream stopped: no reconnection")
    }
  })

/** The camera timestamps (camera → capture time, s) an action computed from `obs` carries. */
export const timestampsOf = (obs: Option.Option<Observation>): ObsTimestamps =>
  Option.isNone(obs) ? {} : Observation.timestamps(obs.value)

/**
 * Which of `stamps`' camera times lies outside this connection's frames, each
 * camera's from its first frame (`first`, its first timestamp that is not 0)
 * to its latest (`latest`); names that are not the robot's cameras (servers
 * ignore them) and times of 0 (no frame) are not judged.
 */
const outsideConnection = (
  stamps: ObsTimestamps,
  first: Readonly<Record<string, number>>,
  latest: ObsTimestamps
): string | undefined => {
  for (const name in stamps) {
    const t = stamps[name]!
    const to = latest[name]
    if (!Number.isFinite(t) || t === 0 || to === undefined) continue
    const from = first[name]
    if (from === undefined) return `${name} at ${t} s, while that camera has sent no frame on this connection`
    if (t < from) return `${name} at ${t} s, before that camera's first frame on this connection (${from} s)`
    if (t > to) return `${name} at ${t} s, after that camera's latest frame (${to} s): a robot clock that restarted`
  }
  return undefined
}

/** Nothing of the robot now connected was observed, by a client that observed the one before. */
const notObservedYet =
  "nothing of the robot now connected has been observed yet: observe it (getObs, reset or the obs stream) before acting"

export const make: Effect.Effect<ObservationStream, never, Scope.Scope> =
  Effect.gen(function*() {
    const latest = yield* SubscriptionRef.make(Option.none<Observation>())
    const published = yield* PubSub.sliding<Observation>(1)
    const running = yield* FiberHandle.make()
    // Each camera's first frame on this connection (its first timestamp that
    // is not 0); whether this connection, and an earlier one, had observations.
    let first: Record<string, number> = {}
    let observed = false
    let observedEarlier = false
    return {
      latest,
      publish: (obs) =>
        Effect.suspend(() => {
          observed = true
          for (const camera of obs.cameras) {
            if (first[camera.name] === undefined && camera.timestamp !== 0) first[camera.name] = camera.timestamp
          }
          return Effect.andThen(SubscriptionRef.set(latest, Option.some(obs)), PubSub.publish(published, obs))
        }),
      connectionLost: Effect.suspend(() => {
        if (observed) observedEarlier = true
        observed = false
        first = {}
        return SubscriptionRef.set(latest, Option.none())
      }),
      fromEarlierConnection: (stamps) => {
        if (!observed) return observedEarlier ? notObservedYet : undefined
        return stamps === undefined
          ? undefined
          : outsideConnection(stamps, first, timestampsOf(SubscriptionRef.getUnsafe(latest)))
      },
      observations: Stream.fromPubSub(published),
      start: (hz, getObs, reconnection) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) => FiberHandle.run(running)(loop(getObs, period, reconnection))).pipe(
          Effect.asVoid
        ),
      stop: FiberHandle.clear(running)
    }
  })
