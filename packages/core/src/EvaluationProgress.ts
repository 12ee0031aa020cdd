/**
 * The progress of an evaluation on a terminal: one line, redrawn in place
 * (`\r`), saying which episode runs, how far it is (steps or time, whichever
 * limit it has) and the successes so far; a line per finished episode stays.
 * Drawn only when the stream is a terminal, at most ten times a second.
 */
import type { Episode } from "./EvaluationResult.js"

export interface EvaluationProgress {
  /** Episode `episode` of `episodes` is at `steps` actions and `elapsed` s. */
  readonly update: (episode: number, steps: number, elapsed: number) => void
  readonly episodeDone: (result: Episode) => void
  /** Erases the line. */
  readonly done: () => void
}

export const none: EvaluationProgress = { update: () => {}, episodeDone: () => {}, done: () => {} }

const width = 24

/** A progress line on `stream` (default stderr) if it is a terminal; `none` otherwise. */
export const terminal = (
  limits: { readonly episodes: number; readonly maxSteps?: number | undefined; readonly maxSeconds?: number | undefined },
  stream: NodeJS.WriteStream = process.stderr
): EvaluationProgress => {
  if (!stream.isTTY) return none
  let last = 0
  let successes = 0
  let finished = 0
  let drawn = false
  const fraction = (steps: number, elapsed: number) =>
    Math.max(
      limits.maxSteps ? steps / limits.maxSteps : 0,
      limits.maxSeconds ? elapsed / limits.maxSeconds : 0
    )
  return {
    update: (episode, steps, elapsed) => {
      const now = performance.now()
      if (now - last < 100) return
      last = now
      const f = Math.max(0, Math.min(1, fraction(steps, elapsed)))
      const filled = Math.round(f * width)
      const bar = "█".repeat(filled) + "░".repeat(width - filled)
      stream.write(
        `\r\x1b[2Kepisode ${episode}/${limits.episodes} ${bar} ${steps} actions ${elapsed.toFixed(1)} s  successes ${successes}/${finished}`
      )
      drawn = true
    },
    episodeDone: (result) => {
      finished++
      if (result.success) successes++
      stream.write(
        `\r\x1b[2Kepisode ${result.episode}/${limits.episodes}: ${result.end}, ${result.success ? "success" : "no success"}, ${result.steps} actions in ${
          result.duration.toFixed(2)
        } s\n`
      )
      drawn = false
    },
    done: () => {
      if (drawn) stream.write("\r\x1b[2K")
      drawn = false
    }
  }
}
