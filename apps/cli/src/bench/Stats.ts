/**
 * Statistics of a benchmark run: percentiles of round trips, and how a stream
 * of action arrivals sits on the ideal grid of its rate. Pure functions over
 * millisecond samples.
 */

export interface Percentiles {
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/** The value at quantile `q` (0…1) of ascending `sorted`, nearest rank. NaN when empty. */
export const quantile = (sorted: ReadonlyArray<number>, q: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil(q * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!
}

export const ascending = (samples: ReadonlyArray<number>): Array<number> => [...samples].sort((a, b) => a - b)

export const percentiles = (samples: ReadonlyArray<number>): Percentiles => {
  const sorted = ascending(samples)
  return {
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!
  }
}

export const mean = (samples: ReadonlyArray<number>): number =>
  samples.length === 0 ? Number.NaN : samples.reduce((a, b) => a + b, 0) / samples.length

export interface CadenceStats {
  readonly hz: number
  /** Actions that arrived. */
  readonly count: number
  /** Median time between consecutive arrivals. */
  readonly interval_ms_p50: number
  /** |arrival k − (origin + k·period)|: p50, p99, max. */
  readonly jitter_ms_p50: number
  readonly jitter_ms_p99: number
  readonly jitter_ms_max: number
  /**
   * How far the last action arrived from where the first one says it should
   * be, by their numbers in the queue: (last − first) − (n_last − n_first)·period.
   * A loop that sleeps `period − elapsed` drifts late by its overhead every
   * tick; a tick the dispatcher skipped adds a whole period (every later
   * action went a tick late). An action the server dropped as superseded
   * (it arrived together with a newer one) adds nothing: the newer one is
   * judged by its own number. Numbered by position when no numbers are given.
   */
  readonly drift_ms: number
}

/**
 * The cadence of `arrivals` (ms, one clock, in order) dispatched at `hz` from
 * a grid starting at `origin` (same clock): the k-th arrival belongs to tick
 * `ticks[k]` when given (e.g. the tick its send was due at: a tick that sent
 * nothing leaves the next ones on their own), else to tick k. `numbers[k]`
 * is the k-th arrival's action number in the queue, for the drift (an action
 * that never arrived leaves a gap), else k. Jitter is measured from the grid
 * the dispatcher started, so it includes the one-way latency of each action;
 * drift is independent of the origin.
 */
export const cadence = (
  arrivals: ReadonlyArray<number>,
  hz: number,
  origin: number,
  ticks?: ReadonlyArray<number>,
  numbers?: ReadonlyArray<number>
): CadenceStats => {
  const period = 1000 / hz
  const count = arrivals.length
  const intervals: Array<number> = []
  for (let k = 1; k < count; k++) intervals.push(arrivals[k]! - arrivals[k - 1]!)
  const tickOf = (k: number) => ticks?.[k] ?? k
  const jitter = ascending(arrivals.map((t, k) => Math.abs(t - (origin + tickOf(k) * period))))
  return {
    hz,
    count,
    interval_ms_p50: quantile(ascending(intervals), 0.5),
    jitter_ms_p50: quantile(jitter, 0.5),
    jitter_ms_p99: quantile(jitter, 0.99),
    jitter_ms_max: count === 0 ? Number.NaN : jitter[count - 1]!,
    drift_ms: count < 2
      ? Number.NaN
      : arrivals[count - 1]! - arrivals[0]! - ((numbers?.[count - 1] ?? count - 1) - (numbers?.[0] ?? 0)) * period
  }
}

/** The grid tick (from `origin`, at `hz`) of each due time (same clock); undefined for none. */
export const ticksOfDues = (dues: ReadonlyArray<number>, hz: number, origin: number): ReadonlyArray<number> | undefined =>
  dues.length === 0 ? undefined : dues.map((due) => Math.round((due - origin) / (1000 / hz)))

/**
 * The tick each arrival belongs to: the tick its send was due at, when the
 * dispatcher reported them (the queue is appended to and sent one action per
 * tick in order, so action `firstSeq + i` is the i-th send); else the
 * action's number from the first one (one per tick from the grid's start).
 * By number alone, a tick the dispatcher skipped (a stall of its thread longer
 * than a period: the next action goes at the next tick) made every later
 * arrival look a period late.
 */
export const arrivalTicks = (
  arrivals: ReadonlyArray<readonly [number, number]>,
  firstSeq: number,
  sent: ReadonlyArray<number> | undefined
): ReadonlyArray<number> => arrivals.map(([seq]) => sent?.[seq - firstSeq] ?? seq - firstSeq)

/** Ticks of the dispatcher's grid between its first and last send that sent nothing. */
export const skippedTicks = (sent: ReadonlyArray<number> | undefined): number | undefined =>
  sent === undefined ? undefined : sent[sent.length - 1]! - sent[0]! + 1 - sent.length

/**
 * The intervals an answer was on its way: each request (ms, ascending) with
 * the first answer received after it (ms, ascending); a request with no
 * answer after it (the record ended first) is on its way to the end
 * (Infinity).
 */
export const transfersOf = (
  asked: ReadonlyArray<number>,
  received: ReadonlyArray<number>
): Array<readonly [number, number]> => {
  const out: Array<readonly [number, number]> = []
  let r = 0
  for (const at of asked) {
    while (r < received.length && received[r]! < at) r++
    out.push([at, r < received.length ? received[r]! : Infinity])
  }
  return out
}

/**
 * Splits samples by whether their tick fell while an answer was on its way:
 * `dues[k]` is sample k's tick (ms, in any order), `transfers` the intervals
 * (ascending, as `transfersOf` gives them), ends included.
 */
export const splitByTransfers = (
  dues: ReadonlyArray<number>,
  samples: ReadonlyArray<number>,
  transfers: ReadonlyArray<readonly [number, number]>
): { readonly during: Array<number>; readonly between: Array<number> } => {
  const during: Array<number> = []
  const between: Array<number> = []
  // by due time: one pass over the transfers
  const order = dues.map((_, k) => k).sort((a, b) => dues[a]! - dues[b]!)
  let t = 0
  for (const k of order) {
    const due = dues[k]!
    while (t < transfers.length && transfers[t]![1] < due) t++
    const inTransfer = t < transfers.length && transfers[t]![0] <= due
    ;(inTransfer ? during : between).push(samples[k]!)
  }
  return { during, between }
}
