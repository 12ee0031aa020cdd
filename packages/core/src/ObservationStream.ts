/**
 * The policy side's observations: the latest one (from any reply), a stream
 * of them as they arrive, and a loop that requests one per tick of a fixed
 * grid so that the latest stays fresh while the policy computes.
 */
import type { Observation, ObsTimestamps } from "@chiral/protocol"
import { Effect, FiberHandle, Option, PubSub, type Scope, Stream, SubscriptionRef } from "effect"
import * as Cadence from "./Cadence.js"
import type { RequestError } from "./RequestError.js"

export interface ObservationStream {
  /** The most recent observation received. */
  readonly latest: SubscriptionRef.SubscriptionRef<Option.Option<Observation>>
  /** Makes `obs` the latest and hands it to the subscribers of `observations`. */
  readonly publish: (obs: Observation) => Effect.Effect<void>
  /**
   * Observations as they arrive. A subscriber that falls behind skips to the
   * newest (only the latest one waits for it), so it never holds old frames.
   */
  readonly observations: Stream.Stream<Observation>
  /** Runs `getObs` every 1/hz s on a fixed grid (`Cadence.fixed`); replaces a running loop. */
  readonly start: (hz: number, getObs: Effect.Effect<Observation, RequestError>) => Effect.Effect<void>
  readonly stop: Effect.Effect<void>
}

/** The camera timestamps (camera → capture time, s) an action computed from `obs` carries. */
export const timestampsOf = (obs: Option.Option<Observation>): ObsTimestamps => {
  if (Option.isNone(obs)) return {}
  const out: Record<string, number> = {}
  for (const camera of obs.value.cameras) out[camera.name] = camera.timestamp
  return out
}

export const make: Effect.Effect<ObservationStream, never, Scope.Scope> =
  Effect.gen(function*() {
    const latest = yield* SubscriptionRef.make(Option.none<Observation>())
    const published = yield* PubSub.sliding<Observation>(1)
    const running = yield* FiberHandle.make()
    return {
      latest,
      publish: (obs) => Effect.andThen(SubscriptionRef.set(latest, Option.some(obs)), PubSub.publish(published, obs)),
      observations: Stream.fromPubSub(published),
      start: (hz, getObs) =>
        Effect.flatMap(Cadence.periodOf(hz), (period) =>
          FiberHandle.run(running)(Cadence.untilDisconnected("obs stream", getObs, period))).pipe(
          Effect.asVoid
        ),
      stop: FiberHandle.clear(running)
    }
  })
