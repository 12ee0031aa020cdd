/**
 * Serves a recorded episode as a robot: `PolicyServer` handlers that answer
 * with what the robot sent when it was recorded, and compare the actions a
 * policy sends now with the ones recorded.
 *
 * Timeline. The recording's observations, in the order they were received,
 * are cut into segments at each `reset_response`. A `reset` request answers
 * with the next segment's reset observation and info (the first reset starts
 * the first segment; after the last, the recording starts over) and starts
 * its clock. An `obs_request` answers with the segment's latest observation
 * received no later than the reset's receive time plus the time elapsed since
 * the reset, times `rate`: recorded order and timing, whatever the rate at
 * which the policy asks. At the segment's end the last observation is held,
 * or with `loop` the segment plays again from its reset. Before any reset, the
 * first segment plays from its start. A legacy `action` step answers with the
 * segment's next observation after the last one served (order, not time),
 * with its recorded reward, terminated, truncated and info when it was a step.
 *
 * Actions. Every observation is served with its recorded camera timestamps,
 * so an action's `obs_timestamps` names the observation the policy acted on;
 * the n-th action received for an observation is compared with the n-th
 * action recorded for it (`ActionComparison`): how far apart they are.
 */
import type { Handlers, StepResult } from "@chiral/core"
import type { Observation, ObsTimestamps, Tensor } from "@chiral/protocol"
import { Tensor as Tensors } from "@chiral/protocol"
import { Clock, Effect } from "effect"
import type { Episode, ObservationEntry, RecordedAction } from "./Episode.js"
import type { RecordError } from "./Recorder.js"

export interface ReplayOptions {
  /** Playback speed: 2 plays twice as fast. Default 1. */
  readonly rate?: number | undefined
  /** Play a segment again from its reset when it ends, instead of holding its last observation. Default false. */
  readonly loop?: boolean | undefined
  /** Told about every action received, compared with the recorded one. */
  readonly onAction?: ((comparison: ActionComparison) => Effect.Effect<void>) | undefined
}

export interface ActionComparison {
  /** The observation the action was computed from (by its camera timestamps), if it is one of the recording's. */
  readonly seq: number | undefined
  /** Which action for that observation this is (0 = the first). */
  readonly index: number
  readonly received: ReadonlyArray<number>
  /** The action recorded at the same place, if any. */
  readonly recorded: ReadonlyArray<number> | undefined
  /** Largest |received − recorded| over the elements (NaN against NaN counts as 0); undefined without a recorded one or when shapes differ. */
  readonly maxAbsDiff: number | undefined
  readonly obsTimestamps: ObsTimestamps
}

export interface ReplayStats {
  readonly resets: number
  readonly observationsServed: number
  readonly actions: number
  /** Actions with a recorded counterpart of the same size. */
  readonly compared: number
  /** Largest and mean `maxAbsDiff` over the compared actions. */
  readonly maxAbsDiff: number
  readonly meanAbsDiff: number
}

/** The key of a set of camera timestamps, independent of key order. */
const timestampsKey = (t: ObsTimestamps): string =>
  JSON.stringify(Object.keys(t).sort().map((k) => [k, t[k]]))

const maxAbsDiff = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number | undefined => {
  if (a.length !== b.length) return undefined
  let max = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!
    const y = b[i]!
    if (x === y || (Number.isNaN(x) && Number.isNaN(y))) continue
    const d = Math.abs(x - y)
    max = Number.isNaN(d) ? Infinity : Math.max(max, d)
  }
  return max
}

/** Splits the observations into segments, each starting at a reset (the first may start without one). */
export const segmentsOf = (observations: ReadonlyArray<ObservationEntry>): Array<Array<ObservationEntry>> => {
  const segments: Array<Array<ObservationEntry>> = []
  for (const o of observations) {
    if (o.reply === "reset_response" || segments.length === 0) segments.push([o])
    else segments[segments.length - 1]!.push(o)
  }
  return segments
}

/**
 * Compares actions received with the ones recorded for the same observation
 * (the n-th received for it with the n-th recorded), and sums up how far apart they are.
 */
const comparer = (episode: Episode, onAction: ReplayOptions["onAction"]) => {
  const recordedFor = new Map<string, Array<RecordedAction>>()
  const seqOf = new Map<string, number>()
  // The first observation with those camera timestamps: a robot may answer
  // again with the same frames before its cameras move on.
  for (const o of episode.observations) {
    const key = timestampsKey(o.cameraTimestamps)
    if (!seqOf.has(key)) seqOf.set(key, o.seq)
  }
  for (const a of episode.actions) {
    const key = timestampsKey(a.obsTimestamps)
    const list = recordedFor.get(key)
    if (list === undefined) recordedFor.set(key, [a])
    else list.push(a)
  }
  const receivedFor = new Map<string, number>()
  let actions = 0
  let compared = 0
  let maxDiff = 0
  let sumDiff = 0
  const compare = (action: Tensor, obsTimestamps: ObsTimestamps): Effect.Effect<void> =>
    Effect.suspend(() => {
      const received = Tensors.toArray(action).map(Number)
      const key = timestampsKey(obsTimestamps)
      const index = receivedFor.get(key) ?? 0
      receivedFor.set(key, index + 1)
      const recorded = recordedFor.get(key)?.[index]?.values
      const diff = recorded === undefined ? undefined : maxAbsDiff(received, recorded)
      actions++
      if (diff !== undefined) {
        compared++
        maxDiff = Math.max(maxDiff, diff)
        sumDiff += diff
      }
      return onAction?.({ seq: seqOf.get(key), index, received, recorded, maxAbsDiff: diff, obsTimestamps }) ?? Effect.void
    })
  const stats = () => ({ actions, compared, maxAbsDiff: maxDiff, meanAbsDiff: compared === 0 ? 0 : sumDiff / compared })
  return { compare, stats }
}

/**
 * Which of a segment's entries plays `elapsed` ms of playback time after its
 * start: the latest received no later than then. Past the end, the last one;
 * with `loop`, the segment again from its start.
 */
const playbackIndex = (entries: ReadonlyArray<ObservationEntry>, elapsed: number, loop: boolean): number => {
  const first = entries[0]!
  const last = entries[entries.length - 1]!
  const span = Number(last.logTime - first.logTime) / 1e6
  if (loop && span > 0) elapsed %= span + 1e-3
  const at = first.logTime + BigInt(Math.floor(elapsed * 1e6))
  let index = 0
  while (index + 1 < entries.length && entries[index + 1]!.logTime <= at) index++
  return index
}

/** Reads the episode's observations, keeping the last one read: the same one is often served again. */
const observationReader = (episode: Episode) => {
  let cached: { seq: number; obs: Observation } | undefined
  return (entry: ObservationEntry) =>
    cached !== undefined && cached.seq === entry.seq
      ? Effect.succeed(cached.obs)
      : Effect.tap(episode.observation(entry.seq), (obs) => Effect.sync(() => (cached = { seq: entry.seq, obs })))
}

/** Handlers that replay `episode`, and what they have done so far. */
export const make = (
  episode: Episode,
  options: ReplayOptions = {}
): { readonly handlers: Handlers<RecordError>; readonly stats: () => ReplayStats } => {
  const rate = options.rate ?? 1
  const segments = segmentsOf(episode.observations)
  if (segments.length === 0) throw new Error(`${episode.path}: the recording has no observations`)
  const hasReset = segments[0]![0]!.reply === "reset_response"

  const actionLog = comparer(episode, options.onAction)
  const load = observationReader(episode)

  let segment = hasReset ? -1 : 0
  let startedAt: number | undefined // ms, when the segment's clock started
  let stepIndex = 0
  let resets = 0
  let served = 0

  const current = () => segments[Math.max(0, segment)]!

  /** The segment's observation at playback time. */
  const atPlayback = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (startedAt === undefined) startedAt = now
    const entries = current()
    const index = playbackIndex(entries, (now - startedAt) * rate, options.loop === true)
    stepIndex = index
    served++
    return yield* load(entries[index]!)
  })

  const reset = Effect.gen(function*() {
    segment = (segment + 1) % segments.length
    if (!hasReset && segment === 0 && segments.length > 1) segment = 1
    resets++
    startedAt = yield* Clock.currentTimeMillis
    stepIndex = 0
    const entry = current()[0]!
    served++
    return { obs: yield* load(entry), info: entry.reply === "reset_response" ? entry.info ?? {} : {} }
  })

  const step = (action: Tensor, context: { readonly obsTimestamps: ObsTimestamps }) =>
    Effect.gen(function*() {
      yield* actionLog.compare(action, context.obsTimestamps)
      const entries = current()
      stepIndex = Math.min(stepIndex + 1, entries.length - 1)
      const entry = entries[stepIndex]!
      served++
      const obs = yield* load(entry)
      return {
        obs,
        reward: entry.reward,
        terminated: entry.terminated,
        truncated: entry.truncated,
        info: entry.reply === "step_response" ? entry.info : undefined
      } satisfies StepResult
    })

  return {
    handlers: {
      getMetadata: Effect.succeed(episode.metadata ?? {}),
      reset,
      getObs: atPlayback,
      applyAction: (action, context) => actionLog.compare(action, context.obsTimestamps),
      step
    },
    stats: () => ({ resets, observationsServed: served, ...actionLog.stats() })
  }
}
