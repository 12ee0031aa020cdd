/**
 * The simulated robot's arm: D joints whose positions follow the applied
 * actions, and an optional task, reaching a target configuration, that makes
 * an evaluation's success rate mean something. Plain synchronous state; the
 * robot (`SimulatedRobot`) calls it from its handlers.
 *
 * Dynamics: an action is a command of absolute joint positions (rad, one per
 * joint). Each applied action moves every joint toward its command by at most
 * `maxStep` (a speed limit: rad per action), and no joint leaves
 * [−`limit`, `limit`]. A value that is not finite moves nothing (it never
 * reaches a motor). An [N, D] chunk (legacy step) is applied row by row.
 *
 * Task (`reach`): at each reset the arm starts at a configuration drawn from
 * a seeded generator (episode k of seed s always starts at the same place),
 * within ±`startSpread` of the target on every joint. The episode terminates
 * (with reward 1, `info.success` true) once every joint is within `tolerance`
 * of the target; the arm then holds still until the next reset. With
 * `truncateAfter` > 0 it is truncated after that many applied actions.
 * Before that, reward is 0. The status travels in every observation's
 * `extra` (`reward`, `terminated`, `truncated`, `info`), the only place the
 * modern protocol has for it, and in legacy step replies.
 */

export interface ReachTaskOptions {
  /** Target joint positions (rad), one per joint. */
  readonly target: ReadonlyArray<number>
  /** Success when every joint is within this of the target (rad). Default 0.02. */
  readonly tolerance?: number | undefined
  /** Episodes start within ± this of the target on every joint (rad). Default 1. */
  readonly startSpread?: number | undefined
  /** Truncated after this many applied actions since the reset; 0 never. Default 0. */
  readonly truncateAfter?: number | undefined
  /** Seed of the start configurations. Default 1. */
  readonly seed?: number | undefined
}

export interface SimulatedArmOptions {
  /** Number of joints (D of the action). */
  readonly joints: number
  /** Largest move of a joint per applied action (rad). Default 0.05. */
  readonly maxStep?: number | undefined
  /** Joint limit (rad): positions stay in [−limit, limit]. Default π. */
  readonly limit?: number | undefined
  readonly task?: ReachTaskOptions | undefined
}

export const defaults = { maxStep: 0.05, limit: Math.PI, tolerance: 0.02, startSpread: 1, seed: 1 } as const

/** An episode's status as the wire carries it (`extra` of each observation, legacy step replies). */
export interface Status {
  readonly reward: number
  readonly terminated: boolean
  readonly truncated: boolean
  readonly info: {
    readonly episode: number
    readonly steps: number
    /** Largest distance of a joint from the target (rad). */
    readonly distance: number
    readonly success: boolean
  }
}

/** mulberry32: a small seeded generator, uniform in [0, 1). */
const generator = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class SimulatedArm {
  readonly joints: number
  private readonly maxStep: number
  private readonly limit: number
  private readonly task:
    | {
      readonly target: ReadonlyArray<number>
      readonly tolerance: number
      readonly startSpread: number
      readonly truncateAfter: number
      readonly seed: number
    }
    | undefined
  private readonly q: Float64Array
  private readonly velocity: Float64Array
  private episode = 0
  private steps = 0
  private reached = false

  constructor(options: SimulatedArmOptions) {
    this.joints = options.joints
    this.maxStep = options.maxStep ?? defaults.maxStep
    this.limit = options.limit ?? defaults.limit
    const task = options.task
    if (task !== undefined && task.target.length !== options.joints) {
      throw new RangeError(`the target has ${task.target.length} joints, the arm ${options.joints}`)
    }
    this.task = task === undefined ? undefined : {
      target: task.target,
      tolerance: task.tolerance ?? defaults.tolerance,
      startSpread: task.startSpread ?? defaults.startSpread,
      truncateAfter: task.truncateAfter ?? 0,
      seed: task.seed ?? defaults.seed
    }
    this.q = new Float64Array(options.joints)
    this.velocity = new Float64Array(options.joints)
  }

  get hasTask(): boolean {
    return this.task !== undefined
  }

  /** Joint positions (rad). */
  get positions(): ReadonlyArray<number> {
    return Array.from(this.q)
  }

  /** The last move of each joint (rad per action). */
  get moved(): ReadonlyArray<number> {
    return Array.from(this.velocity)
  }

  /** Starts the next episode: at the task's next start configuration, or at zero without a task. */
  reset(): void {
    this.episode++
    this.steps = 0
    this.reached = false
    this.velocity.fill(0)
    const task = this.task
    if (task === undefined) return void this.q.fill(0)
    const random = generator(task.seed * 7919 + this.episode)
    for (let j = 0; j < this.joints; j++) {
      this.q[j] = this.clamp(task.target[j]! + (2 * random() - 1) * task.startSpread)
    }
  }

  /** Applies one command row (rad per joint); a row of another length or once the task is reached, nothing moves. */
  apply(command: ArrayLike<number>): void {
    this.steps++
    this.velocity.fill(0)
    if (this.reached || command.length !== this.joints) return
    for (let j = 0; j < this.joints; j++) {
      const wanted = command[j]!
      if (!Number.isFinite(wanted)) continue
      const step = Math.max(-this.maxStep, Math.min(this.maxStep, wanted - this.q[j]!))
      const next = this.clamp(this.q[j]! + step)
      this.velocity[j] = next - this.q[j]!
      this.q[j] = next
    }
    if (this.task !== undefined && this.distance() <= this.task.tolerance) this.reached = true
  }

  /** The episode's status now. */
  status(): Status {
    const task = this.task
    const distance = this.distance()
    return {
      reward: this.reached ? 1 : 0,
      terminated: this.reached,
      truncated: !this.reached && task !== undefined && task.truncateAfter > 0 && this.steps >= task.truncateAfter,
      info: { episode: this.episode, steps: this.steps, distance, success: this.reached }
    }
  }

  private distance(): number {
    const task = this.task
    if (task === undefined) return 0
    let worst = 0
    for (let j = 0; j < this.joints; j++) worst = Math.max(worst, Math.abs(this.q[j]! - task.target[j]!))
    return worst
  }

  private clamp(x: number): number {
    return Math.max(-this.limit, Math.min(this.limit, x))
  }
}
