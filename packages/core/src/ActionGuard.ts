/**
 * The stale-action guard: how old the observation is that an action was
 * computed from, judged by the newest of its `obs_timestamps`.
 *
 * Those timestamps are camera capture times stamped by this server
 * (`CameraState.captureTime`: seconds on the monotonic clock) and echoed back
 * by the client (ours, and the Python/C++ references alike), so the age is
 * measured on one clock, the server's, and needs no clock sync. An action
 * that waited in a frozen server's socket buffer, or in a client that was
 * frozen between reading an observation and acting, arrives with an old
 * timestamp and is dropped before the handler, never applied late.
 */

/** What to do with an action whose `obs_timestamps` is `{}`, so has no age. */
export type UnstampedActions =
  /**
   * Hand it to the handler (default). The guard cannot judge it: a robot
   * without cameras never has timestamps, and reference clients send `{}`
   * until their first observation.
   */
  | "accept"
  /** Drop it as stale: only actions provably computed from a recent observation move the robot. */
  | "drop"

export type Verdict =
  | { readonly _tag: "Fresh"; readonly ageSeconds: number }
  | { readonly _tag: "Unstamped" }
  | { readonly _tag: "Stale"; readonly detail: string }
  | { readonly _tag: "Invalid"; readonly detail: string }

/** Timestamps further than this in the future cannot come from this server's clock. */
const futureToleranceSeconds = 1e-3

const seconds = (s: number): string => `${Number(s.toPrecision(3))} s`

/**
 * Judges one action's `obs_timestamps` at `now` (seconds, capture clock).
 * `maxAgeSeconds` undefined: ages are measured (for stats) but nothing is
 * stale. A non-finite timestamp is invalid; one in the future did not come
 * from this clock, so the action's age is unknown: stale.
 *
 * `earliestStamp` (s): the earliest stamp of each camera this server can
 * have given, if it is to judge by it: the older of its first image written
 * and the oldest stamp it sent (a `getObs` may stamp cameras itself, with a
 * simulator's time, say). A stamp from before that was never this server's:
 * an action computed from it was planned on another robot process, one that
 * ran before a restart (the capture clock is the machine's monotonic clock,
 * which a restarted process shares). Stale whatever `maxAgeSeconds` is: a C++
 * reference client reconnects by itself and steps on with the stamps of the
 * robot it saw before the restart. A stamp of 0 (a camera without a frame)
 * does not count. Of a camera the server has neither written nor sent, the
 * bound is when it started.
 */
export const judge = (
  obsTimestamps: Readonly<Record<string, number>>,
  now: number,
  maxAgeSeconds: number | undefined,
  earliestStamp?: (camera: string) => number | undefined
): Verdict => {
  let newest = -Infinity
  let newestName = ""
  for (const name in obsTimestamps) {
    const t = obsTimestamps[name]!
    if (!Number.isFinite(t)) return { _tag: "Invalid", detail: `obs_timestamps.${name} is ${t}` }
    const earliest = t > 0 ? earliestStamp?.(name) : undefined
    if (earliest !== undefined && t < earliest) {
      return {
        _tag: "Stale",
        detail: `obs_timestamps.${name} is ${seconds(earliest - t)} older than any frame of it this robot gave: ` +
          `an observation of another robot process's (from before a restart)`
      }
    }
    if (t > newest) {
      newest = t
      newestName = name
    }
  }
  if (newest === -Infinity) return { _tag: "Unstamped" }
  const age = now - newest
  if (maxAgeSeconds === undefined) return { _tag: "Fresh", ageSeconds: age }
  if (age < -futureToleranceSeconds) {
    return {
      _tag: "Stale",
      detail: `newest obs timestamp (${newestName}) is ${seconds(-age)} in the future: not this server's capture clock`
    }
  }
  if (age > maxAgeSeconds) {
    return {
      _tag: "Stale",
      detail: `newest obs timestamp (${newestName}) is ${seconds(age)} old, more than maxActionAge ${seconds(maxAgeSeconds)}`
    }
  }
  return { _tag: "Fresh", ageSeconds: age }
}
