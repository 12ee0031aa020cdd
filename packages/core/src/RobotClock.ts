/**
 * The robot's capture clock, as seen from the policy's machine.
 *
 * Camera timestamps are taken on the robot's monotonic clock (`time.monotonic()`
 * in the Python reference, `steady_clock` in C++, `captureTime` here). On one
 * machine that is the policy's clock too, and an observation's time compares
 * directly with now. On two machines the two monotonic clocks count from
 * their own boots: they differ by anything from seconds to days, and a chunk
 * placed on the ticks after its observation (`time-aligned`, a timed blend)
 * would be all late (robot behind) or never due (robot ahead).
 *
 * Without a clock exchange in the protocol, the offset is estimated from
 * what arrives: each observation's gap, arrival minus its newest camera
 * time, is the offset plus how long it took to get here (≥ 0). The smallest
 * gap seen bounds the offset best. While every gap is plausible for a shared
 * clock (≥ −`tolerance`, and the smallest within `sharedWithin`), the clocks
 * are taken as shared (offset 0, ages exact). Otherwise robot times are
 * moved by the smallest gap: an observation counts as taken when the
 * quickest one arrived, so ages are counted from arrival (a few ms short)
 * rather than from capture. A frozen camera still ages: its time stops while
 * the offset does not change.
 *
 * Two machines whose clocks differ by less than `sharedWithin` cannot be told
 * from one machine; synchronise them (chrony, PTP) or use `append`.
 */

/** Gaps this far below zero still fit one clock: float seconds, rounding (s). */
export const tolerance = 0.005
/** The smallest gap a live robot on the same clock shows stays below this (s). */
export const sharedWithin = 1

export interface RobotClock {
  /**
   * Seconds to add to a robot time (a camera timestamp) to place it on this
   * machine's capture clock: 0 while the clocks look shared.
   */
  readonly offset: () => number
  /**
   * One observation, whose newest camera time is `obsTime` (robot clock, s),
   * arrived at `arrival` (this machine's capture clock, s). Returns a line to
   * log when this observation showed the clocks to differ (once per `forget`).
   * A time ≤ 0 is a camera that has not stamped an image yet (servers start
   * at 0): it tells nothing and is skipped, so such frames stay old.
   */
  readonly observe: (obsTime: number, arrival: number) => string | undefined
  /** A new connection: the robot may be another machine. */
  readonly forget: () => void
}

const seconds = (s: number) => `${Number(Math.abs(s).toPrecision(4))} s`

/** Whether the smallest gap seen fits one clock (none seen yet: it does). */
const fitsOneClock = (smallestGap: number) => smallestGap === Infinity || (smallestGap >= -tolerance && smallestGap <= sharedWithin)

export const make = (): RobotClock => {
  let smallestGap = Infinity
  let told = false
  return {
    offset: () => fitsOneClock(smallestGap) ? 0 : smallestGap,
    observe: (obsTime, arrival) => {
      if (!(obsTime > 0) || !Number.isFinite(obsTime) || !Number.isFinite(arrival)) return undefined
      const gap = arrival - obsTime
      if (gap >= smallestGap) return undefined
      smallestGap = gap
      if (fitsOneClock(smallestGap) || told) return undefined
      told = true
      return `chiral: the robot's camera times are ${seconds(smallestGap)} ${
        smallestGap > 0 ? "behind" : "ahead of"
      } this machine's clock (another machine's monotonic clock, or images this old): timed chunks and ages count from when observations arrive`
    },
    forget: () => {
      smallestGap = Infinity
      told = false
    }
  }
}
