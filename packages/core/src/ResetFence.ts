/**
 * What a reset fences off on the policy's side: the actions planned before
 * it. A reset starts a new episode from a new observation; an action planned
 * from the previous episode's, sent after the reset request, would be
 * applied to the freshly reset robot.
 *
 * `PolicyClient.reset` opens the fence (`begin`) before anything else, then
 * empties the action queue, then sends its request. Until the reset's reply
 * is read (the slot tells of it before the reset's observation is published)
 * or the reset ends without one (failed, timed out, interrupted), every
 * action put or sent is planned before it: the robot's next observation, the
 * only one a new plan can come from, has not arrived yet. After the reply,
 * actions stamped with a time before the reset's observation under one of its
 * cameras are still planned before it (a chunk whose inference ran across the
 * reset, put with its `obsTimestamps`); unstamped ones carry the latest
 * observation's at the put, the reset's or a later one, and pass.
 *
 * A reset the client gave up on (timed out) is not waited for: the fence
 * closes with the call. The robot may still be resetting then; the robot's
 * silence (`maxRobotSilence`) is what keeps actions from it meanwhile.
 *
 * The fence belongs to a connection: when it is lost, its resets are over
 * (their calls fail) and its reset's observation is forgotten with the rest.
 */
import type { Observation, ObsTimestamps } from "@chiral/protocol"

export interface ResetFence {
  /**
   * A reset begins: every action is planned before it until its `settle`,
   * called with the reset's observation as soon as its reply is read, or
   * without once the reset has ended. `settle` may be called more than once;
   * the first call closes the fence (for this reset), a call with an
   * observation from this connection marks where the new episode begins.
   */
  readonly begin: () => (observation?: Observation) => void
  /**
   * Why actions stamped `stamps` (camera → time, s, as sent; undefined: not
   * stamped) were planned before a reset, or undefined: a reset is under way,
   * or a stamp lies before the last reset's observation under one of its
   * cameras (times of 0, names not among its cameras, are not judged).
   */
  readonly plannedBefore: (stamps: ObsTimestamps | undefined) => string | undefined
  /** Resets begun so far: a new number for each, to say what it drops once per reset. */
  readonly resets: () => number
  /** The connection is gone: so are its resets and its reset's observation. */
  readonly connectionLost: () => void
}

export const make = (): ResetFence => {
  // The resets under way, each until it settles; the connection they belong to.
  const open = new Set<object>()
  let connection = 0
  let begun = 0
  // The last reset's observation: each camera's time (s), where it is not 0.
  let episodeStart: Record<string, number> | undefined

  return {
    begin: () => {
      begun++
      const ticket = {}
      const on = connection
      open.add(ticket)
      return (observation) => {
        open.delete(ticket)
        if (observation === undefined || on !== connection) return
        const start: Record<string, number> = {}
        for (const camera of observation.cameras) {
          if (camera.timestamp !== 0 && Number.isFinite(camera.timestamp)) start[camera.name] = camera.timestamp
        }
        episodeStart = start
      }
    },
    plannedBefore: (stamps) => {
      if (open.size > 0) return "a reset is under way, its observation not yet arrived"
      if (stamps === undefined || episodeStart === undefined) return undefined
      for (const name in stamps) {
        const t = stamps[name]!
        const from = episodeStart[name]
        if (from === undefined || !Number.isFinite(t) || t === 0) continue
        if (t < from) return `stamped ${name} at ${t} s, before the reset's observation (${from} s)`
      }
      return undefined
    },
    resets: () => begun,
    connectionLost: () => {
      connection++
      open.clear()
      episodeStart = undefined
    }
  }
}
