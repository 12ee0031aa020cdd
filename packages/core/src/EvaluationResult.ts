/**
 * What an evaluation (`Evaluation.runEpisodes`) found, as a typed value
 * (Schema) that also travels as JSON: one `Episode` per episode and their
 * `Summary`. Times are in seconds, except the timing figures, which are in
 * milliseconds (they are small): the age of each action's observation when
 * the action left the client, and the time each inference took.
 */
import { Schema } from "effect"

/** Why an episode ended. */
export const EpisodeEnd = Schema.Literals([
  /** The server said `terminated` (the task is done, well or badly). */
  "terminated",
  /** The server said `truncated` (its own time limit). */
  "truncated",
  /** `maxSteps` actions were sent. */
  "steps",
  /** `maxDuration` passed. */
  "time",
  /** The user's `until` predicate held. */
  "predicate"
])
export type EpisodeEnd = typeof EpisodeEnd.Type

/** A distribution of samples: how many, median, 99th percentile and largest (nearest rank); null when none. */
export const Percentiles = Schema.Struct({
  count: Schema.Number,
  p50: Schema.NullOr(Schema.Number),
  p99: Schema.NullOr(Schema.Number),
  max: Schema.NullOr(Schema.Number)
})
export type Percentiles = typeof Percentiles.Type

export const Episode = Schema.Struct({
  /** 1, 2, … */
  episode: Schema.Number,
  end: EpisodeEnd,
  /** `info.success` as the server reported it; otherwise terminated and not truncated. */
  success: Schema.Boolean,
  /**
   * The reward of the status that ended the episode (`terminated`,
   * `truncated`), else the last one the server reported (0 if none).
   */
  reward: Schema.Number,
  /** Actions sent to the robot during the episode. */
  steps: Schema.Number,
  /** From the reset's reply to the end (s). */
  duration: Schema.Number,
  /** Policy calls. */
  inferences: Schema.Number,
  /** Time per policy call (ms). */
  inferenceMillis: Percentiles,
  /** Age of each action's observation when the action left the client (ms). */
  actionAgeMillis: Percentiles,
  /** Actions dropped because their time had passed (time-aligned and blend chunks). */
  late: Schema.Number,
  /** The `info` of the same status, and the reset's `info`. */
  info: Schema.Record(Schema.String, Schema.Unknown),
  resetInfo: Schema.Record(Schema.String, Schema.Unknown)
})
export type Episode = typeof Episode.Type

export const Summary = Schema.Struct({
  episodes: Schema.Number,
  successes: Schema.Number,
  successRate: Schema.Number,
  meanReward: Schema.Number,
  meanSteps: Schema.Number,
  meanDuration: Schema.Number,
  /** Over every action of every episode (ms). */
  actionAgeMillis: Percentiles,
  inferenceMillis: Percentiles,
  late: Schema.Number
})
export type Summary = typeof Summary.Type

export const EvaluationResult = Schema.Struct({
  episodes: Schema.Array(Episode),
  summary: Summary
})
export type EvaluationResult = typeof EvaluationResult.Type

/** Nearest-rank percentiles of `samples` (any order; not modified). */
export const percentiles = (samples: ReadonlyArray<number>): Percentiles => {
  if (samples.length === 0) return { count: 0, p50: null, p99: null, max: null }
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1]! }
}

const mean = (values: ReadonlyArray<number>) =>
  values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length

/**
 * The summary of `episodes`; the pooled timing figures come from the raw
 * samples (`ages`, `inferences`, ms), since percentiles do not average.
 */
export const summarize = (
  episodes: ReadonlyArray<Episode>,
  samples: { readonly ages: ReadonlyArray<number>; readonly inferences: ReadonlyArray<number> }
): Summary => {
  const successes = episodes.filter((e) => e.success).length
  return {
    episodes: episodes.length,
    successes,
    successRate: episodes.length === 0 ? 0 : successes / episodes.length,
    meanReward: mean(episodes.map((e) => e.reward)),
    meanSteps: mean(episodes.map((e) => e.steps)),
    meanDuration: mean(episodes.map((e) => e.duration)),
    actionAgeMillis: percentiles(samples.ages),
    inferenceMillis: percentiles(samples.inferences),
    late: episodes.reduce((n, e) => n + e.late, 0)
  }
}

/** The result as JSON text (Schema-encoded). */
export const toJson = (result: EvaluationResult, indent = 2): string =>
  JSON.stringify(Schema.encodeSync(EvaluationResult)(result), null, indent)

/** Reads a result back from JSON text; throws a SchemaError on anything else. */
export const fromJson = (text: string): EvaluationResult =>
  Schema.decodeUnknownSync(EvaluationResult)(JSON.parse(text))

const ms = (x: number | null) => (x === null ? "–" : x.toFixed(1))

/** The result as a text table: a row per episode, then the summary. */
export const formatTable = (result: EvaluationResult): string => {
  const header = ["episode", "end", "success", "reward", "steps", "time s", "inferences", "late", "age p50 ms", "age p99 ms", "infer p50 ms"]
  const rows = result.episodes.map((e) => [
    String(e.episode),
    e.end,
    e.success ? "yes" : "no",
    e.reward.toFixed(2),
    String(e.steps),
    e.duration.toFixed(2),
    String(e.inferences),
    String(e.late),
    ms(e.actionAgeMillis.p50),
    ms(e.actionAgeMillis.p99),
    ms(e.inferenceMillis.p50)
  ])
  const s = result.summary
  const total = [
    "all",
    "",
    `${s.successes}/${s.episodes}`,
    s.meanReward.toFixed(2),
    s.meanSteps.toFixed(1),
    s.meanDuration.toFixed(2),
    "",
    String(s.late),
    ms(s.actionAgeMillis.p50),
    ms(s.actionAgeMillis.p99),
    ms(s.inferenceMillis.p50)
  ]
  const all = [header, ...rows, total]
  const widths = header.map((_, c) => Math.max(...all.map((row) => row[c]!.length)))
  const line = (row: ReadonlyArray<string>) => row.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  return [line(header), rule, ...rows.map(line), rule, line(total)].join("\n") +
    `\nsuccess rate ${(s.successRate * 100).toFixed(0)}%; action age = how old each action's observation was when it left the client`
}
