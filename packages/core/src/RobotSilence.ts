/**
 * Whether the robot is answering: since when nothing has come from it while a
 * request waits (from the request's send, or from the last frame that did not
 * answer it). A robot whose process is stopped, whose event loop is blocked
 * or which is busy resetting keeps its connection open (the kernel still
 * acknowledges what arrives), and keepalives notice it only after tens of
 * seconds (WebSocket pings every 20 s, a Zenoh lease of 10 s), while the
 * actions sent meanwhile wait in its socket. The action dispatchers read this
 * to drop the actions due while the robot is silent beyond its limit
 * (`ActionPlan.take`).
 *
 * One per connection, written by the request slot on the policy's thread and
 * read by the dispatcher, which may run on a worker thread: the cell is a
 * `SharedArrayBuffer` of two float64s, written by one thread only —
 * [since when (s, capture clock; NaN while nothing waits), the limit (s)].
 * Plain code, no Effect: dispatcher workers load it.
 *
 * The capture clock is `process.hrtime` on every thread (Effect's default
 * `Clock` and `PreciseTimer`): a policy's thread run on another `Clock` (a
 * `TestClock`, a simulation's) with a worker dispatcher would compare two
 * clocks, as timed chunks already would. The cell is written with plain
 * stores: aligned 64-bit values, which x64 and arm64 never tear.
 */
export interface RobotSilence {
  /** The shared cell: [asked at (s, NaN when nothing waits), limit (s)]. */
  readonly cell: Float64Array
  /** A request was sent at `now` (s): the robot is asked from then on, unless it already was. */
  readonly asked: (now: number) => void
  /** How long (s) the robot has been silent at `now` (s): 0 while nothing waits. */
  readonly silentFor: (now: number) => number
  /** Something arrived from the robot at `now` (s): how long it had been silent (s), 0 if nothing waited. */
  readonly answered: (now: number) => number
}

/** A silence watch whose actions are dropped once the robot has been silent over `limitSeconds` (Infinity: never). */
export const make = (limitSeconds: number): RobotSilence => {
  const cell = new Float64Array(new SharedArrayBuffer(2 * Float64Array.BYTES_PER_ELEMENT))
  cell[0] = Number.NaN
  cell[1] = limitSeconds
  return {
    cell,
    asked: (now) => {
      if (Number.isNaN(cell[0]!)) cell[0] = now
    },
    silentFor: (now) => silentFor(cell, now),
    answered: (now) => {
      const silent = silentFor(cell, now)
      clear(cell)
      return silent
    }
  }
}

/** Whether, at `now` (s), the robot of `cell` has left a request unanswered for longer than its limit. */
export const isSilent = (cell: Float64Array, now: number): boolean => silentFor(cell, now) > cell[1]!

/** How long (s) the robot of `cell` has been silent at `now` (s): 0 while nothing waits. */
export const silentFor = (cell: Float64Array, now: number): number => (Number.isNaN(cell[0]!) ? 0 : now - cell[0]!)

/** Since when nothing has come from the robot while a request waits (s), NaN while nothing waits. */
export const asked = (cell: Float64Array): number => cell[0]!

/** Nothing waits any more (the robot answered). */
export const clear = (cell: Float64Array): void => {
  cell[0] = Number.NaN
}

/** The limit of `cell` (s). */
export const limitOf = (cell: Float64Array): number => cell[1]!
