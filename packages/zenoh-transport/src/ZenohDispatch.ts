/**
 * The Zenoh client's action dispatcher on a thread of its own, seen from the
 * policy's thread: starts the worker (`ZenohDispatchWorker`), which opens a
 * Zenoh session of its own to the server and publishes the actions on the
 * request key, and offers it as the connection's `OffThreadDispatch`.
 *
 * The worker lives in the connection's scope: closing it asks the worker to
 * close its session (the server is told, as for any peer that leaves) and
 * waits for the thread to end, cutting it short after the session's close
 * timeout and a second more.
 */
import { Deferred, Effect, Exit, Option, type Scope } from "effect"
import type { OffThreadDispatch } from "@chiral/core/OffThreadDispatch"
import * as DispatchControl from "@chiral/core/DispatchControl"
import { TransportError } from "@chiral/core/TransportError"
import * as WorkerThread from "./WorkerThread.js"
import type { FromWorker, WorkerOptions } from "./ZenohDispatchWorker.js"

export interface StartOptions extends WorkerOptions {
  /** The server's locator, for errors. */
  readonly address: string
  /** How long the worker may take to open its session and learn the server's subscriber. */
  readonly readyTimeoutMillis: number
  /** How long closing may take before the thread is terminated. */
  readonly closeTimeoutMillis: number
}

export interface Started {
  /**
   * Waits until the worker's session reaches the server's request subscriber,
   * then gives the dispatcher. None when the thread itself could not run (a
   * warning is logged; PolicyClient then dispatches from its own fiber). Fails
   * with `Unavailable` when the worker's session cannot reach the server.
   */
  readonly ready: Effect.Effect<Option.Option<OffThreadDispatch>, TransportError>
  /** Fails once the worker's session is lost after it was ready (or the thread ends). */
  readonly lost: Effect.Effect<never, TransportError>
}

/** Starts the worker; it connects at once. The thread ends with the scope. */
export const start = (options: StartOptions): Effect.Effect<Started, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ready = Deferred.makeUnsafe<boolean, TransportError>()
    const lost = Deferred.makeUnsafe<never, TransportError>()
    let startError: string | undefined
    const failure = (reason: "Unavailable" | "Closed", detail: string) =>
      new TransportError({ reason, address: options.address, detail: `action dispatcher: ${detail}` })

    const { worker } = yield* WorkerThread.spawn({
      name: "ZenohDispatchWorker",
      workerData: {
        chiralZenohDispatch: { host: options.host, port: options.port, key: options.key, session: options.session }
      },
      closeTimeoutMillis: options.closeTimeoutMillis + 1000,
      onClosing: () => control.end(),
      // The thread could not run at all (its script missing, say): the
      // connection then goes without it.
      onGone: (what) => {
        control.end()
        startError ??= what
        Deferred.doneUnsafe(ready, Exit.succeed(false))
        Deferred.doneUnsafe(lost, Exit.fail(failure("Closed", what)))
      }
    })
    // Requests and reports of the dispatcher itself; `end`: no more answers will come.
    const control = DispatchControl.make((message) => worker.postMessage(message))
    worker.on("message", (message: FromWorker) => {
      if (control.receive(message)) return
      switch (message.t) {
        case "ready":
          return void Deferred.doneUnsafe(ready, Exit.succeed(true))
        case "failed":
          control.end()
          return void Deferred.doneUnsafe(ready, Exit.fail(failure("Unavailable", message.detail)))
        case "lost":
          // The worker still answers: the policy's thread asks what it held (to count it dropped).
          return void Deferred.doneUnsafe(lost, Exit.fail(failure("Closed", message.detail)))
      }
    })

    const whenReady = Deferred.await(ready).pipe(
      Effect.timeoutOrElse({
        duration: options.readyTimeoutMillis,
        orElse: () =>
          Effect.fail(failure("Unavailable", `its session did not reach ${options.key} within ${options.readyTimeoutMillis} ms`))
      }),
      Effect.flatMap((usable) =>
        usable
          ? Effect.succeed(Option.some(control.dispatch))
          : Effect.as(
            Effect.logWarning(
              `chiral: the Zenoh action dispatcher thread cannot run (${startError}); actions are dispatched on this thread`
            ),
            Option.none()
          )
      )
    )

    return { ready: whenReady, lost: Deferred.await(lost) } satisfies Started
  })
