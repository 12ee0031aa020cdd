/**
 * The action dispatcher of a WebSocket client connection, on a worker thread
 * of its own.
 *
 * Why a thread: a policy process that receives 17 MB observations 30 times a
 * second spends much of its main thread's time in garbage collection, and
 * whatever else in the policy computes. A 10–100 Hz action dispatch timed on
 * that thread is late by as much as the longest pause. The connection itself
 * stays on the policy's thread (a reply reaches it without a hop between
 * threads); this thread keeps the waiting actions and writes each one to the
 * socket's descriptor at its tick through the connection's `SharedWriter`. Its
 * heap holds next to nothing, so it has nothing to collect, and it asks for a
 * higher scheduling priority where the system allows (`ThreadPriority`).
 *
 * The dispatcher keeps the waiting actions in an `ActionPlan` (the chunk
 * modes, late drops and capacity of every dispatcher), sends one per tick as
 * `apply_action` stamped with the camera timestamps its chunk came with, or
 * else those of the client's latest observation (the main thread reports
 * them while it ticks), and times ticks on a grid anchored at its start with
 * sub-millisecond precision (`PreciseTimer`). While the robot leaves a
 * request unanswered beyond its limit, the actions due are dropped: the main
 * thread writes when it asked into a shared cell (`RobotSilence`).
 *
 * This file is the worker's entry; `WebSocketTransport` starts it. Messages
 * between the threads are `ToWorker` and `FromWorker`. It imports neither
 * Effect nor the codec, so it starts in a few milliseconds and its heap stays
 * small.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads"
import { encodeApplyAction } from "@chiral/core/ActionFrame"
import { ActionPlan, obsTime, type Taken } from "@chiral/core/ActionPlan"
import type { DispatchReport, DispatchRequest } from "@chiral/core/DispatchControl"
import * as PreciseTimer from "@chiral/core/PreciseTimer"
import { SharedWriter, type SharedWriterHandle } from "./SharedWriter.js"
import * as ThreadPriority from "@chiral/core/ThreadPriority"
import { encodeBinaryFrame } from "./WebSocketClient.js"

export interface WorkerOptions {
  /** Actions that may wait; beyond it the oldest are dropped. */
  readonly maxQueuedActions: number
}

export type ToWorker =
  | DispatchRequest
  /** The connection is open: write to it through this. */
  | { readonly t: "attach"; readonly writer: SharedWriterHandle }

export type FromWorker =
  | DispatchReport
  /**
   * A write failed (the socket is closed, or the server stopped reading): the
   * ticks have stopped, the action is counted among those `clear` removes,
   * and the connection is over.
   */
  | { readonly t: "lost"; readonly detail: string }

/** Sends one queued action per tick of a fixed grid anchored at `start`. */
class Dispatcher {
  private readonly plan: ActionPlan
  private readonly send: (taken: Taken, due: number) => boolean
  /** The connection's `RobotSilence` cell, once the policy's thread has sent it. */
  silence: Float64Array | undefined = undefined
  /** The plan changed at a tick that sent nothing (late actions dropped). */
  private readonly changed: () => void
  private running = false
  private period = 0
  private start = 0
  /** Grid slot of the next tick. */
  private slot = 0
  private cancel: (() => void) | undefined

  constructor(plan: ActionPlan, send: (taken: Taken, due: number) => boolean, changed: () => void) {
    this.plan = plan
    this.send = send
    this.changed = changed
  }

  begin(periodMillis: number) {
    this.end()
    this.running = true
    this.period = periodMillis
    this.plan.setPeriod(periodMillis / 1000)
    this.start = PreciseTimer.monotonicMillis()
    this.slot = 0
    this.fire()
  }

  end() {
    this.running = false
    this.cancel?.()
    this.cancel = undefined
  }

  /** One tick, at its grid time (the first one at once, from `begin`). */
  private fire() {
    this.cancel = undefined
    if (!this.running) return
    const due = this.start + this.slot * this.period
    const waiting = this.plan.size
    const taken = this.plan.take(PreciseTimer.monotonicMillis() / 1000, due / 1000, this.silence)
    if (taken !== undefined) {
      if (!this.send(taken, due)) return this.end()
    } else if (this.plan.size !== waiting) this.changed()
    // The slot after this one; after an overrun of whole periods, go at once
    // (as the latest slot that has begun) and rejoin the grid: missed ticks
    // are not replayed.
    const elapsed = PreciseTimer.monotonicMillis() - this.start
    const next = this.slot + 1
    this.slot = next * this.period <= elapsed ? Math.max(next, Math.floor(elapsed / this.period)) : next
    this.cancel = PreciseTimer.at(this.start + this.slot * this.period, () => this.fire())
  }
}

const run = (options: WorkerOptions) => {
  const port = parentPort!
  const post = (message: FromWorker) => port.postMessage(message)
  let latest: Readonly<Record<string, number>> = {}
  let dispatched = 0
  let writer: SharedWriter | undefined
  const plan = new ActionPlan(options.maxQueuedActions)
  // Taken from the plan for a write that failed: dropped with the rest.
  let unsent = 0
  const state = () => ({ pending: plan.size, dropped: plan.dropped })

  // This thread's one job that is timed: put it ahead of the process's other
  // threads where the system allows (see ThreadPriority).
  post({ t: "priority", obtained: ThreadPriority.prioritizeCurrentThread() })
  // Compile the send path before the first tick needs it (the first call of
  // cold code costs about a millisecond).
  encodeBinaryFrame([encodeApplyAction([1, 1], new Float32Array(1), { warmup: 0 })])

  const dispatcher: Dispatcher = new Dispatcher(
    plan,
    ({ action, obsTimestamps }, due) => {
      const stamp = obsTimestamps ?? latest
      // A failed write means the connection is gone or going: say so, and the
      // policy's thread ends the connection (if it has not already).
      const failed = writer === undefined
        ? new Error("no connection to write to")
        : writer.write(encodeBinaryFrame([encodeApplyAction(action.shape, action.data, stamp)]))
      if (failed !== undefined) {
        unsent++
        post({ t: "lost", detail: `cannot send an action: ${failed.message}` })
        return false
      }
      const at = PreciseTimer.monotonicMillis()
      post({ t: "dispatched", count: ++dispatched, at, due, obsTime: obsTime(stamp), ...state() })
      return true
    },
    () => post({ t: "queue", ...state() })
  )

  port.on("message", (message: ToWorker) => {
    switch (message.t) {
      case "attach":
        writer = new SharedWriter(message.writer)
        return
      case "observed":
        latest = message.timestamps
        return
      case "silence":
        dispatcher.silence = new Float64Array(message.cell)
        return
      case "put":
        try {
          plan.setCapacity(message.capacity)
          plan.put(message, PreciseTimer.monotonicMillis() / 1000)
        } catch (error) {
          // a blend of mismatched shapes: refused, the plan unchanged
          return post({ t: "done", id: message.id, ...state(), error: String((error as Error).message ?? error) })
        }
        return post({ t: "done", id: message.id, ...state() })
      case "clear": {
        const cleared = plan.size + unsent
        unsent = 0
        plan.clear()
        return post({ t: "done", id: message.id, ...state(), cleared })
      }
      case "pending":
        return post({ t: "done", id: message.id, ...state() })
      case "start":
        dispatcher.begin(message.periodMillis)
        return post({ t: "done", id: message.id })
      case "stop":
        dispatcher.end()
        return post({ t: "done", id: message.id })
    }
  })
}

if (!isMainThread && parentPort !== null && (workerData as { chiralActionDispatch?: WorkerOptions })?.chiralActionDispatch) {
  run((workerData as { chiralActionDispatch: WorkerOptions }).chiralActionDispatch)
}
