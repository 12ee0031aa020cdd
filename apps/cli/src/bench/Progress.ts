/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal and
 * at most ten times a second (drawing costs the event loop that is being
 * measured, so it stays rare and small).
 */

export interface ProgressBar {
  readonly update: (phase: string, fraction: number) => void
  /** Erases the bar. */
  readonly done: () => void
}

const width = 30

export const make = (stream: NodeJS.WriteStream = process.stderr): ProgressBar => {
  if (!stream.isTTY) return { update: () => {}, done: () => {} }
  let last = 0
  let lastPhase = ""
  let drawn = false
  return {
    update: (phase, fraction) => {
      const now = performance.now()
      if (phase === lastPhase && now - last < 100 && fraction < 1) return
      last = now
      lastPhase = phase
      const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width)
      const bar = "█".repeat(filled) + "░".repeat(width - filled)
      stream.write(`\r\x1b[2K${bar} ${Math.round(fraction * 100).toString().padStart(3)}%  ${phase}`)
      drawn = true
    },
    done: () => {
      if (drawn) stream.write("\r\x1b[2K")
      drawn = false
    }
  }
}
