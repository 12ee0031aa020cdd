/**
 * The actions waiting for dispatch, and how a new chunk joins them: the one
 * piece of logic every dispatcher runs (PolicyClient's own fiber through
 * `ActionQueue`, the WebSocket client's `ActionDispatchWorker`, the Zenoh
 * client's `ZenohDispatchWorker`). Plain synchronous code on plain data: no
 * Effect, no codec, so the WebSocket worker can load it and stay small, and
 * what is put into the plan can cross threads (`portable`).
 *
 * Chunk modes (`ChunkMode`):
 *  - `append`: the chunk's actions go after those waiting.
 *  - `replace`: the chunk replaces every waiting action.
 *  - `time-aligned`: the chunk carries the camera timestamps of the
 *    observation it was computed from (`obsTimestamps`, seconds on the
 *    capture clock, `CameraState.captureTime`). Its action i is due at
 *    t0 + i·period, t0 the newest camera timestamp and period the dispatch
 *    period. An action's slot is [due − period/2, due + period/2), and it
 *    is sent by the tick of the dispatcher's grid that falls in it: the tick
 *    nearest its due time (judged by the tick's grid time, so that a timer
 *    firing a little late or early cannot make a tick take the neighbouring
 *    slot's action). Actions whose slot has passed when the chunk arrives are
 *    dropped and counted as `late`, and so is one whose tick has passed while
 *    it waited; a tick that comes more than half a period after its grid
 *    time is judged by the actual time instead. So an action leaves within
 *    half a period of its due time (plus its tick's own lateness, less than
 *    half a period), or not at all. The chunk replaces what waits from its
 *    first slot on; earlier timed actions stay.
 *  - blend (`blend(…)`, temporal ensembling as in ACT): the chunk is merged
 *    with what waits, slot by slot. Each slot keeps Σ wₖ·aₖ and Σ wₖ over the
 *    predictions made for it, k = 0 for the oldest, and sends their weighted
 *    mean. ACT's weights are wₖ = exp(−m·k) (Zhao et al. 2023, "Learning
 *    Fine-Grained Bimanual Manipulation with Low-Cost Hardware", §3.4; m =
 *    0.01 in LeRobot's ACT): with m > 0 older predictions count a little
 *    more. A chunk with `obsTimestamps` is aligned by time as above (late
 *    actions dropped); one without is aligned at the head: its action 0
 *    merges with the next action to go, as in ACT's synchronous loop (one
 *    chunk per step). Slots only one side predicts keep that side's action.
 *
 * Every action may carry the camera timestamps it was computed from (any
 * mode, given with the chunk): the dispatcher stamps its `apply_action` with
 * them instead of the latest observation's, so the server sees how old the
 * observation behind each action really is. A blended action carries the
 * newest contribution's.
 *
 * Beyond `capacity` the oldest waiting actions are dropped (counted as
 * `overflow`), so a runaway policy cannot grow memory without bound. A tick
 * that runs a second or more after its grid time (the dispatcher's thread did
 * not run) drops the untimed actions waiting (`stalled`; see `take`).
 */
import type { ObsTimestamps } from "@chiral/protocol"
import { isSilent } from "./RobotSilence.js"

/** One action: float32 values of the given shape (what crosses threads). */
export interface Rows {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

/**
 * Weights of temporal ensembling, by k: how many predictions for the same slot
 * came before this one (0 for the oldest).
 *  - `exponential`: wₖ = exp(−m·k) (ACT).
 *  - `table`: wₖ = weights[min(k, length − 1)].
 *  - `function`: wₖ = weight(k); it cannot cross threads, `portable` turns it
 *    into a table.
 * Weights must be finite and ≥ 0, w₀ > 0.
 */
export type BlendWeights =
  | { readonly kind: "exponential"; readonly m: number }
  | { readonly kind: "table"; readonly weights: ReadonlyArray<number> }
  | { readonly kind: "function"; readonly weight: (k: number) => number }

export interface Blend {
  readonly kind: "blend"
  readonly weights: BlendWeights
}

export type ChunkMode = "append" | "replace" | "time-aligned" | Blend

/** A mode that can cross threads (structured clone): no weight function. */
export type PortableMode =
  | "append"
  | "replace"
  | "time-aligned"
  | { readonly kind: "blend"; readonly weights: Exclude<BlendWeights, { readonly kind: "function" }> }

/** ACT's m as LeRobot's ACT uses it (`temporal_ensemble_coeff`). */
export const actM = 0.01

/**
 * Blend mode. `weights`: a number is ACT's m (wₖ = exp(−m·k)); an array is a
 * table by k (the last entry for every k beyond); a function gives wₖ.
 * Default: ACT's m = 0.01.
 */
export const blend = (weights: number | ReadonlyArray<number> | ((k: number) => number) = actM): Blend => ({
  kind: "blend",
  weights: typeof weights === "number"
    ? { kind: "exponential", m: weights }
    : typeof weights === "function"
    ? { kind: "function", weight: weights }
    : { kind: "table", weights: [...weights] }
})

export interface Chunk {
  readonly actions: ReadonlyArray<Rows>
  readonly mode: ChunkMode | PortableMode
  /** Camera timestamps (s, capture clock) of the observation the chunk was computed from. */
  readonly obsTimestamps?: ObsTimestamps | undefined
  /**
   * Seconds to add to the observation's time to place it on the clock `put`
   * and `take` are given (`RobotClock`: the robot's clock may be another
   * machine's). Default 0. The actions keep `obsTimestamps` as they are.
   */
  readonly clockOffset?: number | undefined
}

/** An action leaving the plan. */
export interface Taken {
  readonly action: Rows
  /** The camera timestamps it was computed from, if its chunk said. */
  readonly obsTimestamps: ObsTimestamps | undefined
  /** When it was due (s, capture clock), if it is timed. */
  readonly due: number | undefined
}

/** What the plan has dropped so far, by reason. */
export interface Drops {
  /** Timed actions whose slot had passed: on arrival, or while waiting. */
  readonly late: number
  /** Waiting actions a `replace` or `time-aligned` chunk superseded. */
  readonly replaced: number
  /** The oldest waiting actions, beyond capacity. */
  readonly overflow: number
  /**
   * Due while the robot had left a request unanswered for longer than its
   * silence limit (`RobotSilence`): taken at their tick and not sent.
   */
  readonly robotSilent: number
  /**
   * Untimed actions (`append`, `replace`, a blend without timestamps) still
   * waiting when a tick ran `stallSeconds` or more after its grid time: the
   * dispatcher's thread did not run meanwhile (the process was stopped, or
   * starved of CPU), and they were planned before that, from an observation
   * at least as old. Dropped at that tick, which sends nothing.
   */
  readonly stalled: number
}

/** Nothing dropped: what a dispatcher reports before it has a plan to ask. */
export const noDrops: Drops = { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 }

/**
 * How late (s) a tick must run after its grid time for the dispatcher to be
 * taken as stalled (`Drops.stalled`). 1 s: the robot-silence default
 * (`maxRobotSilence`), the other limit past which actions planned earlier are
 * not sent; far above what a loaded machine delays a tick (milliseconds to
 * tens of them: a wait for a core, a garbage collection), so load alone never
 * drops; and below what an operator would call a frozen policy (a trial: a
 * policy stopped 3 s went on sending its queue, planned 3.5 s before, one
 * action per tick, the robot applying each 3.2–3.9 s after it was put).
 */
export const stallSeconds = 1

/**
 * How long after a stall chunks planned before it are still looked for (s):
 * longer than any inference that ran across the stop, and short enough that
 * a camera whose stamps stopped advancing is not taken for one.
 */
export const stallAftermathSeconds = 10

/** The newest of the camera timestamps (s) that `counts`; undefined when there is none. */
const newestStamp = (timestamps: ObsTimestamps | undefined, counts: (t: number) => boolean): number | undefined => {
  if (timestamps === undefined) return undefined
  let newest: number | undefined
  for (const name in timestamps) {
    const t = timestamps[name]!
    if (counts(t) && (newest === undefined || t > newest)) newest = t
  }
  return newest
}

/** The newest of the camera timestamps (s), the time of the observation; undefined when there are none. */
export const obsTime = (timestamps: ObsTimestamps | undefined): number | undefined => newestStamp(timestamps, Number.isFinite)

/** The newest camera time of `timestamps` that is a frame's (not 0: a camera that had none), s. */
const framedTime = (timestamps: ObsTimestamps | undefined): number | undefined =>
  newestStamp(timestamps, (t) => t !== 0 && Number.isFinite(t))

/**
 * How many of a timed chunk's `length` actions are late at `now`: action i
 * (due at t0 + i·period, s) is late once its slot has ended, at due +
 * period/2. The first actions are the late ones.
 */
export const lateAt = (t0: number, period: number, now: number, length: number): number => {
  let late = 0
  while (late < length && now >= t0 + late * period + period / 2) late++
  return late
}

/**
 * Why the chunk cannot be put, or undefined: a time-aligned chunk needs
 * camera timestamps, a blend needs weights that are finite and ≥ 0 with
 * w₀ > 0, and blended actions must have equal shapes (checked on merge).
 */
export const validate = (chunk: Chunk): string | undefined => {
  const mode = chunk.mode
  if (mode === "time-aligned" && obsTime(chunk.obsTimestamps) === undefined) {
    return "a time-aligned chunk needs the camera timestamps of its observation (obsTimestamps)"
  }
  if (typeof mode === "object") {
    const w = mode.weights
    if (w.kind === "exponential" && !Number.isFinite(w.m)) return `blend weights: m must be finite, got ${w.m}`
    if (w.kind === "table") {
      if (w.weights.length === 0) return "blend weights: the table is empty"
      if (w.weights.some((x) => !(Number.isFinite(x) && x >= 0))) return "blend weights must be finite and ≥ 0"
      if (!(w.weights[0]! > 0)) return "blend weights: w₀ must be > 0"
    }
  }
  return undefined
}

/**
 * The mode as it can cross threads: a weight function becomes a table of
 * max(`depth`, 64) entries (k = 0 … ; beyond, the last one applies). A chunk
 * put every tick gives each slot at most as many predictions as the chunk has
 * actions, so its length is the natural depth; 64 covers short chunks put
 * more often than that.
 */
export const portable = (mode: ChunkMode, depth: number): PortableMode => {
  if (typeof mode === "string") return mode
  const weights = mode.weights
  if (weights.kind !== "function") return { kind: "blend", weights }
  const weight = weights.weight
  return { kind: "blend", weights: { kind: "table", weights: Array.from({ length: Math.max(64, depth) }, (_, k) => weight(k)) } }
}

const weightOf = (weights: BlendWeights, k: number): number => {
  const w = weights.kind === "exponential"
    ? Math.exp(-weights.m * k)
    : weights.kind === "table"
    ? weights.weights[Math.min(k, weights.weights.length - 1)]!
    : weights.weight(k)
  if (!(Number.isFinite(w) && w >= 0) || (k === 0 && w === 0)) {
    throw new RangeError(`blend weight w${k} = ${w}: weights must be finite and ≥ 0, w₀ > 0`)
  }
  return w
}

/** One waiting action: the weighted sum of its predictions. */
interface Entry {
  readonly shape: ReadonlyArray<number>
  /** Σ wₖ·aₖ; a single prediction keeps its float32 values as they came (weight 1). */
  sum: Float32Array | Float64Array
  weightSum: number
  predictions: number
  /** Timed: due at t0 + index·period (s). The period is the plan's, known once dispatch starts. */
  t0: number | undefined
  index: number
  stamp: ObsTimestamps | undefined
}

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  a.length === b.length && a.every((d, i) => d === b[i])

/**
 * Makes `entry` a weighted sum in float64: a single prediction came in with
 * weight 1 and is rescaled to `w0`, the weight of a first prediction.
 */
const widen = (entry: Entry, w0: number): Float64Array => {
  if (entry.sum instanceof Float64Array) return entry.sum
  const wide = new Float64Array(entry.sum.length)
  for (let j = 0; j < wide.length; j++) wide[j] = entry.sum[j]! * w0
  entry.weightSum = w0
  entry.sum = wide
  return wide
}

/** Adds prediction `values` with weight `w` to `entry`. */
const merge = (entry: Entry, values: Float32Array, w: number, w0: number, stamp: ObsTimestamps | undefined) => {
  const sum = widen(entry, w0)
  for (let j = 0; j < sum.length; j++) sum[j]! += w * values[j]!
  entry.weightSum += w
  entry.predictions++
  if (stamp !== undefined) entry.stamp = stamp
}

/** Adds every prediction of `other` to `entry` (two waiting actions that fall on one slot). */
const combine = (entry: Entry, other: Entry, w0: number) => {
  const sum = widen(entry, w0)
  const more = widen(other, w0)
  for (let j = 0; j < sum.length; j++) sum[j]! += more[j]!
  entry.weightSum += other.weightSum
  entry.predictions += other.predictions
  if ((obsTime(other.stamp) ?? -Infinity) > (obsTime(entry.stamp) ?? -Infinity)) entry.stamp = other.stamp
}

/** A new prediction for a waiting action, checked before anything is changed. */
interface Match {
  readonly entry: Entry
  readonly values: Float32Array
  readonly w: number
}

const checkShape = (entry: Entry, shape: ReadonlyArray<number>) => {
  if (!sameShape(entry.shape, shape)) {
    throw new RangeError(`cannot blend an action of shape [${shape}] into one of shape [${entry.shape}]`)
  }
}

/** `action` as the next prediction for `entry`, which already has `predictions`. */
const matchOf = (entry: Entry, action: Rows, weights: BlendWeights, predictions = entry.predictions): Match => {
  checkShape(entry, action.shape)
  return { entry, values: action.data, w: weightOf(weights, predictions) }
}

const valuesOf = (entry: Entry): Float32Array => {
  if (!(entry.sum instanceof Float64Array)) return entry.sum
  const out = new Float32Array(entry.sum.length)
  for (let j = 0; j < out.length; j++) out[j] = entry.sum[j]! / entry.weightSum
  return out
}

export class ActionPlan {
  private entries: Array<Entry | undefined> = []
  private head = 0
  private capacity: number
  /** The dispatch period (s); undefined until dispatch starts. */
  private period: number | undefined = undefined
  private drops = { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0 }
  /**
   * After a stall, until an untimed chunk planned after it is put (or
   * `stallAftermathSeconds` have passed): what was observed before `before`
   * (s, capture clock) was planned before the stall. The stall's late tick ran
   * at `now`; observations more than `stallSeconds` older than that are older
   * than any a policy that was running could still have been acting on.
   */
  private afterStall: { readonly before: number; readonly until: number } | undefined = undefined
  /** When the dispatcher's last tick ran (s, capture clock); undefined since dispatch (re)started. */
  private lastTickAt: number | undefined = undefined
  /** When the last action was taken (s, capture clock). */
  private lastTaken: number | undefined = undefined

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity))
  }

  get size(): number {
    return this.entries.length - this.head
  }

  get dropped(): Drops {
    return { ...this.drops }
  }

  setCapacity(capacity: number): void {
    this.capacity = Math.max(1, Math.floor(capacity))
    this.trim()
  }

  /** The dispatch period in seconds (ticks are one period apart); timed actions are placed with it. */
  setPeriod(seconds: number): void {
    if (Number.isFinite(seconds) && seconds > 0) this.period = seconds
    // dispatch (re)starts here: a gap since the ticks of before is no stall
    this.lastTickAt = undefined
  }

  /**
   * Puts a chunk at `now` (s, capture clock); returns how many of its actions
   * were late. Throws a RangeError for a chunk `validate` refuses, or actions
   * of different shapes in a blend (the plan is unchanged then).
   */
  put(chunk: Chunk, now: number): number {
    const invalid = validate(chunk)
    if (invalid !== undefined) throw new RangeError(invalid)
    const mode = chunk.mode
    const stamp = chunk.obsTimestamps
    const observed = obsTime(stamp)
    const t0 = observed === undefined ? undefined : observed + (chunk.clockOffset ?? 0)
    if (mode === "append" || mode === "replace") {
      if (this.plannedBeforeStall(stamp, chunk.clockOffset, now)) {
        this.drops.stalled += chunk.actions.length
        return 0
      }
      if (mode === "replace") this.supersedeAll()
      for (const action of chunk.actions) this.push(this.entry(action, undefined, 0, stamp))
      this.trim()
      return 0
    }
    const period = this.period
    if (t0 !== undefined && period !== undefined) return this.putTimed(chunk, t0, period, now)
    if (mode === "time-aligned") {
      // Dispatch has not started: nothing is late yet, the ticks will judge.
      this.supersedeAll()
      chunk.actions.forEach((action, i) => this.push(this.entry(action, t0, i, stamp)))
      this.trim()
      return 0
    }
    this.blendAtHead(chunk.actions, mode.weights, stamp, t0)
    return 0
  }

  /**
   * The action for a tick at `now` (s, capture clock) whose grid time is
   * `tick` (default `now`), or undefined: none waits, or the next one is timed
   * and its slot has not begun. Timed actions whose slot has passed are
   * dropped on the way (`late`). Slots are judged at the grid time, unless the
   * tick is more than half a period late: then at `now`.
   *
   * Nothing is taken within half a period of the last action taken: the
   * action waits for the next tick. A dispatcher whose thread stalled (the
   * policy process stopped, a blocking inference on the main thread) fires
   * its late tick and then, rejoining its grid, the current one at once: it
   * sent two or three actions 1–4 ms apart, which the robot applied as they
   * came (each in a read of its own, so not coalesced), where the Python
   * reference sends one per period.
   *
   * `silence`: the connection's `RobotSilence` cell (when the oldest request
   * the robot has not answered was sent, s on the same clock, NaN when none
   * waits; and how long it may be). Once the robot is silent beyond its
   * limit, the action due is taken and dropped (`robotSilent`): a robot that
   * stopped answering (its process stopped, its loop blocked) would otherwise
   * find every action sent meanwhile waiting in its socket, and a server that
   * applies what it reads (the references') would apply them at once when it
   * resumes.
   *
   * A tick that runs `stallSeconds` or more after its grid time (the late
   * tick above: a stalled dispatcher's timer fires when its thread runs
   * again, the tick after it is the grid's current one and on time) drops
   * every untimed action waiting (`stalled`) and sends nothing: they were
   * planned before the stall, and would otherwise go out one per tick that
   * long after they were put. Timed actions are judged by their slots, as at
   * any tick. Untimed chunks put afterwards that are stamped with an
   * observation taken more than `stallSeconds` before the late tick ran are
   * dropped the same way (`plannedBeforeStall`), until one planned after the
   * stall comes. The next actions planned after the stall go as usual. A
   * stall that falls within a tick, after its take and before the dispatcher
   * times the next one (while its action is written), makes the next tick the
   * grid's current one, on time: it is seen by the gap since the tick before
   * (`stalled`).
   */
  take(now: number, tick?: number, silence?: Float64Array): Taken | undefined {
    if (this.stalled(now, tick)) {
      this.afterStall = { before: now - stallSeconds, until: now + stallAftermathSeconds }
      if (this.dropUntimed() > 0) return undefined
    }
    const period = this.period
    if (period !== undefined && this.lastTaken !== undefined && now - this.lastTaken < period / 2) return undefined
    const taken = this.takeDue(now, tick ?? now)
    if (taken === undefined) return undefined
    this.lastTaken = now
    if (silence !== undefined && isSilent(silence, now)) {
      this.drops.robotSilent++
      return undefined
    }
    return taken
  }

  /**
   * Whether an untimed chunk stamped `stamp` (plus `clockOffset`), put at
   * `now`, was planned before the last stall: its inference ran across the
   * stop, or it was computed at once from the observation the stop left as
   * the latest. Judged only until a chunk planned after the stall comes, for
   * at most `stallAftermathSeconds`: a camera whose stamps stopped advancing
   * (frozen, or a policy that observed once) is no stall's business. Timed
   * chunks are judged by their slots (`putTimed`), as at a tick; cameras
   * without a frame (0) say nothing of when the chunk was observed.
   */
  private plannedBeforeStall(stamp: ObsTimestamps | undefined, clockOffset: number | undefined, now: number): boolean {
    const after = this.afterStall
    if (after === undefined) return false
    if (now > after.until) {
      this.afterStall = undefined
      return false
    }
    const seen = framedTime(stamp)
    if (seen === undefined) return false
    if (seen + (clockOffset ?? 0) < after.before) return true
    this.afterStall = undefined
    return false
  }

  /**
   * Whether the dispatcher did not run for `stallSeconds` before this tick at
   * `now` with grid time `tick`: the tick runs that late, or (a stop that fell
   * inside the tick before it, after its take: this one is the grid's current
   * one, on time) it comes that long plus a period after the tick before.
   * Only ticks of a dispatcher say their grid time; a `take` without one (a
   * caller polling when it likes) is never judged a stall.
   */
  private stalled(now: number, tick: number | undefined): boolean {
    if (tick === undefined) return false
    const before = this.lastTickAt
    this.lastTickAt = now
    const gap = before === undefined || this.period === undefined ? 0 : now - before - this.period
    return now - tick >= stallSeconds || gap >= stallSeconds
  }

  private takeDue(now: number, tick: number): Taken | undefined {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head]!
      const due = this.dueOf(entry)
      if (due !== undefined) {
        const half = this.period! / 2
        const at = now - tick < half ? tick : now
        if (at >= due + half) {
          this.drops.late++
          this.shift()
          continue
        }
        if (at < due - half) return undefined
      }
      this.shift()
      return { action: { shape: entry.shape, data: valuesOf(entry) }, obsTimestamps: entry.stamp, due }
    }
    return undefined
  }

  /** Drops every untimed waiting action (`stalled`); how many. */
  private dropUntimed(): number {
    const waiting = this.waiting()
    const timed = waiting.filter((entry) => entry.t0 !== undefined)
    const dropped = waiting.length - timed.length
    if (dropped > 0) {
      this.drops.stalled += dropped
      this.reset(timed)
    }
    return dropped
  }

  /** Drops every waiting action (not counted: the caller asked). */
  clear(): void {
    this.entries = []
    this.head = 0
  }

  private entry(action: Rows, t0: number | undefined, index: number, stamp: ObsTimestamps | undefined): Entry {
    return { shape: action.shape, sum: action.data, weightSum: 1, predictions: 1, t0, index, stamp }
  }

  private dueOf(entry: Entry): number | undefined {
    return entry.t0 === undefined || this.period === undefined ? undefined : entry.t0 + entry.index * this.period
  }

  private waiting(): Array<Entry> {
    return this.entries.slice(this.head) as Array<Entry>
  }

  private reset(entries: Array<Entry>) {
    this.entries = entries
    this.head = 0
    this.trim()
  }

  /** A replacing chunk: whatever waits is superseded. */
  private supersedeAll() {
    this.drops.replaced += this.size
    this.entries = []
    this.head = 0
  }

  /**
   * A chunk with a time, once the period is known: late actions dropped, the
   * rest placed on their slots (replacing, or blended with, what waits there).
   */
  private putTimed(chunk: Chunk, t0: number, period: number, now: number): number {
    const half = period / 2
    const actions = chunk.actions
    // the first action whose slot has not passed
    const first = lateAt(t0, period, now, actions.length)
    if (first === actions.length) {
      // all late: a stale chunk changes nothing
      this.drops.late += first
      return first
    }
    const start = t0 + first * period
    const before: Array<Entry> = []
    const from: Array<Entry> = []
    let untimed = 0
    for (const entry of this.waiting()) {
      const due = this.dueOf(entry)
      if (due === undefined) untimed++
      else if (due < start - half) before.push(entry)
      else from.push(entry)
    }
    const stamp = chunk.obsTimestamps
    if (chunk.mode === "time-aligned") {
      this.drops.late += first
      this.drops.replaced += from.length + untimed
      const placed = actions.slice(first).map((action, j) => this.entry(action, t0, first + j, stamp))
      this.reset([...before, ...placed])
      return first
    }
    const weights = (chunk.mode as Blend).weights
    // Slot j is j periods after `start`. What waits there is blended with the
    // chunk's action for it; two waiting actions on one slot (left by chunks
    // on other phases of the grid) are blended together first.
    const bySlot = new Map<number, Array<Entry>>()
    for (const entry of from) {
      const slot = Math.round((this.dueOf(entry)! - start) / period)
      const group = bySlot.get(slot)
      if (group === undefined) bySlot.set(slot, [entry])
      else {
        checkShape(group[0]!, entry.shape)
        group.push(entry)
      }
    }
    const w0 = weightOf(weights, 0)
    const matches: Array<Match> = []
    const added: Array<[number, Entry]> = []
    for (let i = first; i < actions.length; i++) {
      const group = bySlot.get(i - first)
      if (group === undefined) added.push([i - first, this.entry(actions[i]!, t0, i, stamp)])
      else matches.push(matchOf(group[0]!, actions[i]!, weights, group.reduce((n, e) => n + e.predictions, 0)))
    }
    // Everything checked: now change the plan, all of it on the chunk's grid.
    this.drops.late += first
    this.drops.replaced += untimed
    const placed = new Map<number, Entry>()
    for (const [slot, [entry, ...others]] of bySlot) {
      for (const other of others) combine(entry!, other, w0)
      entry!.t0 = t0
      entry!.index = first + slot
      placed.set(slot, entry!)
    }
    for (const m of matches) merge(m.entry, m.values, m.w, w0, stamp)
    for (const [slot, entry] of added) placed.set(slot, entry)
    const slots = [...placed.keys()].sort((a, b) => a - b)
    this.reset([...before, ...slots.map((slot) => placed.get(slot)!)])
    return first
  }

  /**
   * Blend without time (or before the period is known): action i merges with
   * the i-th waiting one. New actions keep the chunk's time, if it has one,
   * so that a later chunk can be aligned with them once the period is known.
   */
  private blendAtHead(
    actions: ReadonlyArray<Rows>,
    weights: BlendWeights,
    stamp: ObsTimestamps | undefined,
    t0: number | undefined
  ) {
    const waiting = this.waiting()
    const w0 = weightOf(weights, 0)
    const matches = actions.slice(0, waiting.length).map((action, i) => matchOf(waiting[i]!, action, weights))
    for (const m of matches) merge(m.entry, m.values, m.w, w0, stamp)
    for (let i = waiting.length; i < actions.length; i++) waiting.push(this.entry(actions[i]!, t0, i, stamp))
    this.reset(waiting)
  }

  private push(entry: Entry) {
    this.entries.push(entry)
  }

  private shift() {
    this.entries[this.head++] = undefined
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head)
      this.head = 0
    }
  }

  private trim() {
    const excess = this.size - this.capacity
    if (excess <= 0) return
    this.drops.overflow += excess
    for (let i = 0; i < excess; i++) this.shift()
  }
}
