/**
 * The policy's-thread side of an action dispatcher that runs on a worker
 * thread (the WebSocket client's `ActionDispatchWorker`, the Zenoh client's
 * `ZenohDispatchWorker`): the messages both workers understand, requests
 * answered by `done`, the `dispatched` reports, and the `OffThreadDispatch`
 * that PolicyClient drives (see `OffThreadDispatch`).
 */
import type { ObsTimestamps } from "@chiral/protocol"
import { Effect } from "effect"
import type { Drops, PortableMode } from "./ActionPlan.js"
import type { OffThreadDispatch, QueueState } from "./OffThreadDispatch.js"
import type { Obtained } from "./ThreadPriority.js"

/** An action as it crosses threads: float32 values of the given shape. */
export interface ActionRows {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

/** What the policy's thread tells a dispatcher worker. */
export type DispatchRequest =
  /** The camera timestamps of the client's latest observation, for the actions that follow. */
  | { readonly t: "observed"; readonly timestamps: Readonly<Record<string, number>> }
  /**
   * Whether the robot answers: the connection's `RobotSilence` cell, written
   * by the policy's thread; the actions due while the robot is silent beyond
   * its limit are dropped.
   */
  | { readonly t: "silence"; readonly cell: SharedArrayBuffer }
  | {
    readonly t: "put"
    readonly id: number
    readonly actions: ReadonlyArray<ActionRows>
    /** How the chunk joins the waiting actions (`ActionPlan`). */
    readonly mode: PortableMode
    /** The camera timestamps of the chunk's observation (s): for time-aligned and blend, and the actions' stamps. */
    readonly obsTimestamps?: ObsTimestamps | undefined
    /** Seconds to add to them to place them on this machine's capture clock (`RobotClock`). */
    readonly clockOffset?: number | undefined
    readonly capacity: number
  }
  /** Empties the queue; `done` says how many actions it removed (`cleared`). */
  | { readonly t: "clear"; readonly id: number }
  | { readonly t: "pending"; readonly id: number }
  | { readonly t: "start"; readonly id: number; readonly periodMillis: number }
  | { readonly t: "stop"; readonly id: number }

/** What a dispatcher worker reports. */
export type DispatchReport =
  /**
   * Request `id` is done; for put, clear and pending, the waiting actions
   * after it; `error`: why a put was refused (the plan is unchanged).
   */
  | {
    readonly t: "done"
    readonly id: number
    readonly pending?: number
    readonly dropped?: Drops
    readonly error?: string
    /** For clear: the actions it removed, with any taken for a write that failed. */
    readonly cleared?: number
  }
  /**
   * An action went out at `at`, its tick due at `due` on the dispatcher's grid
   * (monotonic ms, `process.hrtime`); `count` sent so far; `obsTime` the time
   * of the observation it was stamped with (s, newest camera timestamp);
   * `pending` and `dropped` the waiting actions after it.
   */
  | {
    readonly t: "dispatched"
    readonly count: number
    readonly at: number
    readonly due: number
    readonly obsTime?: number | undefined
    readonly pending: number
    readonly dropped: Drops
  }
  /** A tick changed the waiting actions without sending one (late ones dropped). */
  | { readonly t: "queue"; readonly pending: number; readonly dropped: Drops }
  /** The scheduling the worker's thread obtained (`ThreadPriority`), once at its start. */
  | { readonly t: "priority"; readonly obtained: Obtained }

type Done = Extract<DispatchReport, { readonly t: "done" }>
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
export type Call = DistributiveOmit<Extract<DispatchRequest, { readonly id: number }>, "id">

export interface DispatchControl {
  readonly dispatch: OffThreadDispatch
  /** One request to the worker, answered by its `done`; undefined once the worker is gone. */
  readonly call: (request: Call) => Effect.Effect<Done | undefined>
  /** Takes a report from the worker; false when the message is none of the dispatcher's. */
  readonly receive: (message: { readonly t: string }) => boolean
  /** No answer will come any more: whatever waits gets none, and nothing more is posted. */
  readonly end: () => void
  readonly ended: () => boolean
}

/**
 * A dispatcher worker's entry: `<name>.js` beside the module at `from` (its
 * `import.meta.url`) in its package's dist/. Under vitest that module is the
 * TypeScript source, and the worker is still the build (`tsc -b` first).
 */
export const workerScript = (name: string, from: string): URL =>
  from.endsWith(".ts")
    ? new URL(`../dist/${name}.js`, from)
    : new URL(`./${name}.js`, from)

type DispatchedListener = (count: number, at: number, due: number, obsTime: number | undefined) => void

/** Who hears the worker's reports: PolicyClient, once it listens. */
interface Listeners {
  dispatched: DispatchedListener | undefined
  queue: ((state: QueueState) => void) | undefined
  priority: ((obtained: Obtained) => void) | undefined
  /** Kept for a listener that comes later: the worker reports it before anyone may listen. */
  obtained: Obtained | undefined
}

/** Requests posted with an id and resumed by the `done` of that id; after `end`, by nothing. */
const makeCalls = (post: (message: DispatchRequest) => void) => {
  const waiting = new Map<number, (reply: Done | undefined) => void>()
  let nextId = 0
  let ended = false

  const end = () => {
    if (ended) return
    ended = true
    for (const resume of waiting.values()) resume(undefined)
    waiting.clear()
  }

  const call = (request: Call) =>
    Effect.callback<Done | undefined>((resume) => {
      if (ended) return resume(Effect.succeed(undefined))
      const id = nextId++
      waiting.set(id, (reply) => resume(Effect.succeed(reply)))
      post({ ...request, id } as DispatchRequest)
      return Effect.sync(() => waiting.delete(id))
    })

  const answer = (reply: Done) => {
    const resume = waiting.get(reply.id)
    waiting.delete(reply.id)
    resume?.(reply)
  }

  return { call, answer, end, ended: () => ended }
}

type Calls = ReturnType<typeof makeCalls>

/** Takes a report from the worker to the listeners, and answers to their calls; false when it is none of these. */
const makeReceive = (calls: Calls, listeners: Listeners) => (message: { readonly t: string }): boolean => {
  const report = message as DispatchReport
  switch (report.t) {
    case "done": {
      // the new state first: whoever the answer resumes sees it
      if (report.pending !== undefined && report.dropped !== undefined) {
        listeners.queue?.({ pending: report.pending, dropped: report.dropped })
      }
      calls.answer(report)
      return true
    }
    case "dispatched":
      listeners.queue?.({ pending: report.pending, dropped: report.dropped })
      listeners.dispatched?.(report.count, report.at, report.due, report.obsTime)
      return true
    case "queue":
      listeners.queue?.({ pending: report.pending, dropped: report.dropped })
      return true
    case "priority":
      listeners.obtained = report.obtained
      listeners.priority?.(report.obtained)
      return true
    default:
      return false
  }
}

/** What PolicyClient drives: each operation a call, the newest observation posted while the worker ticks. */
const makeDispatch = (post: (message: DispatchRequest) => void, calls: Calls, listeners: Listeners): OffThreadDispatch => {
  const { call } = calls
  // The newest observation's timestamps reach the worker only while it ticks:
  // a message per observation would cost every round trip tens of µs.
  let ticking = false
  let latest: Readonly<Record<string, number>> | undefined

  // Control never fails: once the worker is gone there is nothing to dispatch.
  const control = (request: Call) => Effect.map(call(request), (reply) => reply?.pending ?? 0)

  return {
    put: (actions, request, capacity) =>
      call({
        t: "put",
        mode: request.mode,
        obsTimestamps: request.obsTimestamps,
        clockOffset: request.clockOffset,
        capacity,
        // a compact copy: cloning a view would clone its whole underlying buffer
        actions: actions.map((a) => ({ shape: a.shape, data: new Float32Array(a.data as Float32Array) }))
      }).pipe(Effect.flatMap((reply) =>
        reply?.error === undefined ? Effect.void : Effect.die(new RangeError(reply.error))
      )),
    clear: Effect.asVoid(control({ t: "clear" })),
    discard: Effect.map(call({ t: "clear" }), (reply) => reply?.cleared ?? 0),
    pending: control({ t: "pending" }),
    start: (periodMillis) =>
      Effect.suspend(() => {
        ticking = true
        if (latest !== undefined && !calls.ended()) post({ t: "observed", timestamps: latest })
        return Effect.asVoid(control({ t: "start", periodMillis }))
      }),
    stop: Effect.suspend(() => {
      ticking = false
      return Effect.asVoid(control({ t: "stop" }))
    }),
    drop: Effect.suspend(() => {
      ticking = false
      // In order: after `stop` no tick runs, and the reports of earlier sends
      // have arrived before its answer; then what is left is counted.
      return call({ t: "stop" }).pipe(
        Effect.andThen(call({ t: "clear" })),
        Effect.map((reply) => reply?.cleared ?? 0)
      )
    }),
    observed: (timestamps) => {
      latest = timestamps
      if (ticking && !calls.ended()) post({ t: "observed", timestamps })
    },
    watchSilence: (cell) => {
      if (!calls.ended()) post({ t: "silence", cell: cell.buffer as SharedArrayBuffer })
    },
    onDispatched: (next) => {
      listeners.dispatched = next
    },
    onQueue: (next) => {
      listeners.queue = next
    },
    onPriority: (next) => {
      listeners.priority = next
      if (listeners.obtained !== undefined) next(listeners.obtained)
    }
  }
}

/** Control of a dispatcher worker reached through `post`. */
export const make = (post: (message: DispatchRequest) => void): DispatchControl => {
  const calls = makeCalls(post)
  const listeners: Listeners = { dispatched: undefined, queue: undefined, priority: undefined, obtained: undefined }
  return {
    dispatch: makeDispatch(post, calls, listeners),
    call: calls.call,
    receive: makeReceive(calls, listeners),
    end: calls.end,
    ended: calls.ended
  }
}
