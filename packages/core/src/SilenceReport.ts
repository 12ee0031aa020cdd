/**
 * What the policy's side does and says while the robot is silent
 * (`RobotSilence`): the counts of the actions dropped for it, the two
 * warnings that frame a silence, and what happens when it ends.
 *
 * The dispatcher drops the actions due at its ticks (`ActionPlan.take`), on
 * this thread or on a worker whose reports arrive here late and out of step
 * with the robot's frames. So the opening warning is said only while the robot
 * is still silent, and the closing one is decided here, by the thread that
 * read the robot's answer, once the dispatcher has reported every tick before
 * it (`sync`): one silence, one pair of lines, exact counts.
 *
 * When a silence in which actions were dropped ends, whatever still waits is
 * dropped too (counted with them): it was planned before the silence, from a
 * robot that may since have been reset or moved, and the policy puts a new
 * plan from what it sees now.
 */
import { Effect } from "effect"
import { captureTime } from "./CameraState.js"
import * as RobotSilence from "./RobotSilence.js"

export interface SilenceReport {
  /**
   * A new connection, watched through `cell` (undefined: not watched). After
   * one the robot never answered (`fresh` false: it was turned away), a
   * silence said already is not said again until a connection is answered.
   */
  readonly attach: (cell: Float64Array | undefined, fresh: boolean) => void
  /** The connection's first frame arrived: the robot let it in. */
  readonly heard: () => void
  /** The live connection's plan has dropped `total` actions for silence so far (a tick, or a worker's report). */
  readonly planDropped: (total: number) => Effect.Effect<void>
  /** Whether an action sent now (`sendAction`) is to be dropped for silence; if so it is counted and said. */
  readonly refuseSend: Effect.Effect<boolean>
  /**
   * Something arrived after the robot was silent `silentFor` s, beyond its
   * limit; the watch is cleared only after this, so no tick sends meanwhile.
   * `planTotal`: the plan's count once every tick before is reported;
   * `discard`: drops what still waits, giving how many.
   */
  readonly answered: (
    silentFor: number,
    planTotal: Effect.Effect<number>,
    discard: Effect.Effect<number>
  ) => Effect.Effect<void>
  /** Dropped for silence outside the plans' counts (sends, what waited at a silence's end), over every connection. */
  readonly outsidePlans: () => number
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`

export const make = (): SilenceReport => {
  let cell: Float64Array | undefined
  // The live connection's plan count, as last heard; what has been said for: the plan's
  // count at the last closing line, and what was dropped outside the plan since it.
  let planSeen = 0
  let planSaid = 0
  let outsideSince = 0
  let outside = 0
  // The opening line of the current silence has been said (on this connection,
  // or carried over from ones turned away); its end is being said.
  let opened = false
  let carried = false
  let answering = false

  /** The opening line, once per silence, and only while it lasts. */
  const open = Effect.suspend(() => {
    if (opened || answering || cell === undefined) return Effect.void
    const watched = cell
    return Effect.flatMap(captureTime, (now) => {
      if (opened || answering || !RobotSilence.isSilent(watched, now)) return Effect.void
      opened = true
      return Effect.logWarning(
        `chiral: nothing has come from the robot for over ${RobotSilence.limitOf(watched)} s while a request waits ` +
          `(its process stopped, its loop blocked, a reset under way, or this process's thread paused): the actions ` +
          `due are dropped, not sent, until it answers (counted in droppedActions().robotSilent)`
      )
    })
  })

  return {
    attach: (next, fresh) => {
      cell = next
      planSeen = 0
      planSaid = 0
      outsideSince = 0
      carried = !fresh && opened
      opened = carried
      answering = false
    },
    heard: () => {
      if (carried) opened = false
      carried = false
    },
    planDropped: (total) =>
      Effect.suspend(() => {
        if (total <= planSeen) return Effect.void
        planSeen = total
        return open
      }),
    refuseSend: Effect.suspend(() => {
      const watched = cell
      if (watched === undefined) return Effect.succeed(false)
      return Effect.flatMap(captureTime, (now) => {
        if (!RobotSilence.isSilent(watched, now)) return Effect.succeed(false)
        outside++
        outsideSince++
        return Effect.as(open, true)
      })
    }),
    answered: (silentFor, planTotal, discard) =>
      Effect.gen(function*() {
        // The ticks go on dropping until the watch is cleared: their reports
        // meanwhile belong to this silence, not to a new one.
        answering = true
        planSeen = Math.max(planSeen, yield* planTotal)
        if (planSeen - planSaid + outsideSince === 0) {
          planSaid = planSeen
          return
        }
        const waiting = yield* discard
        // the ticks that dropped while it was discarding count with the silence
        planSeen = Math.max(planSeen, yield* planTotal)
        const dropped = planSeen - planSaid + outsideSince
        planSaid = planSeen
        outsideSince = 0
        outside += waiting
        const rest = waiting === 0 ? "" : `, and ${plural(waiting, "action", "actions")} still waiting, planned before it`
        yield* Effect.logWarning(
          `chiral: the robot answered again after ${silentFor.toFixed(2)} s; ` +
            `${plural(dropped, "action", "actions")} due meanwhile ${dropped === 1 ? "was" : "were"} dropped${rest}`
        )
      }).pipe(Effect.ensuring(Effect.sync(() => {
        // cleared here too, in the same step: no report may find it still silent
        if (cell !== undefined) RobotSilence.clear(cell)
        opened = false
        answering = false
      }))),
    outsidePlans: () => outside
  }
}
