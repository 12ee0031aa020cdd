/**
 * The life of one of the Zenoh client's worker threads (the action
 * dispatcher's, `ZenohDispatch`; the session's, `ZenohSession`): started in a
 * scope, asked to close with it, and noticed when it ends on its own.
 */
import { Effect, type Scope } from "effect"
import { Worker } from "node:worker_threads"
import * as DispatchControl from "@chiral/core/DispatchControl"

export interface WorkerThread {
  readonly worker: Worker
  /** The thread has ended. */
  readonly exited: () => boolean
}

export interface SpawnOptions {
  /** The worker's entry, `<name>.js` beside this module in dist/. */
  readonly name: string
  readonly workerData: unknown
  /** How long the thread may take to close before it is terminated. */
  readonly closeTimeoutMillis: number
  /** Runs when the scope starts closing the thread. */
  readonly onClosing?: (() => void) | undefined
  /**
   * Runs once when the thread fails or ends without being asked to (its
   * script missing, an uncaught error): what happened.
   */
  readonly onGone: (what: string) => void
}

/**
 * Starts the thread. Closing the scope posts `{ t: "close" }` and waits for
 * the thread to end, terminating it after `closeTimeoutMillis`.
 */
export const spawn = (options: SpawnOptions): Effect.Effect<WorkerThread, never, Scope.Scope> =>
  Effect.gen(function*() {
    let exited = false
    let closing = false
    let gone = false
    const goneWith = (what: string) => {
      if (gone || closing) return
      gone = true
      options.onGone(what)
    }
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(DispatchControl.workerScript(options.name, import.meta.url), {
          // None of the parent's Node options: the worker is built JavaScript importing
          // built packages (a test runner's source condition would point it at
          // TypeScript), and V8 flags are process-wide anyway.
          execArgv: [],
          workerData: options.workerData
        })
      ),
      (worker) =>
        Effect.callback<void>((resume) => {
          closing = true
          options.onClosing?.()
          if (exited) return resume(Effect.void)
          const timer = setTimeout(() => void worker.terminate(), options.closeTimeoutMillis)
          worker.once("exit", () => {
            clearTimeout(timer)
            resume(Effect.void)
          })
          worker.postMessage({ t: "close" })
        })
    )
    worker.on("error", (error) => goneWith(`the thread failed: ${error.message}`))
    worker.on("exit", (code) => {
      exited = true
      goneWith(`the thread exited (${code})`)
    })
    return { worker, exited: () => exited }
  })
