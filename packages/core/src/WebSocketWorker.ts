/**
 * A WebSocket client connection on a worker thread, with the action
 * dispatcher next to it.
 *
 * Why a thread: a policy process that receives 17 MB observations 30 times a
 * second spends its main thread's time in garbage collection (V8 collects the
 * old generation every few observations, with pauses of 5–20 ms on these
 * machines) and in whatever the policy computes. A 10–100 Hz action dispatch
 * timed on that thread is late by as much as the longest pause. Here the socket
 * and the dispatch timer live on a thread whose heap holds next to nothing, so
 * an action leaves within a fraction of a millisecond of its grid time however
 * busy the main thread is. Received messages move to the main thread without a
 * copy (their ArrayBuffers are transferred).
 *
 * The dispatcher keeps the waiting actions (a sliding queue), sends one per
 * tick as `apply_action` stamped with the camera timestamps of the client's
 * latest observation (the main thread reports each one), and times ticks on a
 * grid anchored at its start:
 * a timer wakes it just before the tick, `Atomics.wait` sleeps the last
 * stretch with sub-millisecond precision, and reading is paused while a tick
 * is imminent so a large message cannot hold the event loop past it.
 *
 * This file is the worker's entry; `WebSocketTransport` starts it. Messages
 * between the threads are `ToWorker` and `FromWorker`. It imports neither
 * Effect nor the codec, so it starts in a few milliseconds and its heap stays
 * small (its collections are what could delay a tick).
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads"
import { encodeApplyAction } from "./ActionFrame.js"
import * as ThreadPriority from "./ThreadPriority.js"
import * as WebSocketClient from "./WebSocketClient.js"

export interface WorkerOptions {
  readonly connect: Omit<WebSocketClient.ConnectOptions, "pauseReading">
  /** Actions that may wait; beyond it the oldest are dropped. */
  readonly maxQueuedActions: number
}

/** An action as it crosses threads: float32 values of the given shape. */
export interface ActionRows {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

export type ToWorker =
  | { readonly t: "send"; readonly id: number; readonly parts: ReadonlyArray<Uint8Array> }
  | { readonly t: "close"; readonly code: number }
  /** The camera timestamps of the client's latest observation, for the actions that follow. */
  | { readonly t: "observed"; readonly timestamps: Readonly<Record<string, number>> }
  | {
    readonly t: "put"
    readonly id: number
    readonly actions: ReadonlyArray<ActionRows>
    readonly replace: boolean
    readonly capacity: number
  }
  | { readonly t: "clear"; readonly id: number }
  | { readonly t: "pending"; readonly id: number }
  | { readonly t: "start"; readonly id: number; readonly periodMillis: number }
  | { readonly t: "stop"; readonly id: number }

export type FromWorker =
  | { readonly t: "open" }
  | { readonly t: "message"; readonly buffer: ArrayBuffer; readonly offset: number; readonly length: number }
  | {
    readonly t: "closed"
    readonly code: number
    readonly reason: string
    readonly error: { readonly kind: WebSocketClient.ClientSocketError["kind"]; readonly message: string } | undefined
  }
  | { readonly t: "done"; readonly id: number; readonly error?: string | undefined; readonly pending?: number }
  /**
   * An action went out at `at`, due at `due` on the dispatcher's grid
   * (monotonic ms, `process.hrtime`); `count` sent so far.
   */
  | { readonly t: "dispatched"; readonly count: number; readonly at: number; readonly due: number }

const now = (): number => Number(process.hrtime.bigint()) / 1e6

/** How long before a tick reading pauses and the timer hands over to `Atomics.wait`. */
const handoverMillis = 2
/** Reads into a message are capped so one event-loop turn (≤ 32 reads) stays short. */
const maxReadBytes = 256 * 1024

/** The waiting actions: a sliding queue (the oldest dropped beyond capacity). */
class ActionQueue {
  private items: Array<ActionRows> = []
  private head = 0
  private capacity: number
  constructor(capacity: number) {
    this.capacity = capacity
  }
  setCapacity(capacity: number) {
    this.capacity = Math.max(1, capacity)
  }
  get size() {
    return this.items.length - this.head
  }
  put(actions: ReadonlyArray<ActionRows>, replace: boolean) {
    if (replace) this.clear()
    for (const action of actions) this.items.push(action)
    const excess = this.size - this.capacity
    if (excess > 0) this.head += excess
    this.compact()
  }
  poll(): ActionRows | undefined {
    if (this.head >= this.items.length) return undefined
    const action = this.items[this.head]!
    this.items[this.head++] = undefined as unknown as ActionRows
    this.compact()
    return action
  }
  clear() {
    this.items = []
    this.head = 0
  }
  private compact() {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }
}

/** Sends one queued action per tick of a fixed grid anchored at `start`. */
class Dispatcher {
  private readonly queue: ActionQueue
  private readonly send: (action: ActionRows, due: number) => boolean
  private readonly onTick: () => void
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4))
  private running = false
  private period = 0
  private start = 0
  /** Grid slot of the next tick. */
  private slot = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor(queue: ActionQueue, send: (action: ActionRows, due: number) => boolean, onTick: () => void) {
    this.queue = queue
    this.send = send
    this.onTick = onTick
  }

  begin(periodMillis: number) {
    this.end()
    this.running = true
    this.period = periodMillis
    this.start = now()
    this.slot = 0
    this.fire()
  }

  end() {
    this.running = false
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  /** True when the next tick is close: reading should pause so the loop gets to it. */
  imminent(): boolean {
    return this.running && this.start + this.slot * this.period - now() < handoverMillis
  }

  private schedule() {
    const wait = this.start + this.slot * this.period - now()
    // Node timers are whole milliseconds against a loop clock that may be stale:
    // wake early, then wait out the rest precisely.
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.floor(wait - handoverMillis)))
  }

  private fire() {
    this.timer = undefined
    if (!this.running) return
    const due = this.start + this.slot * this.period
    const wait = due - now()
    if (wait > 0.02) Atomics.wait(this.sleeper, 0, 0, wait)
    const action = this.queue.poll()
    if (action !== undefined && !this.send(action, due)) return this.end()
    // The slot after this one; after an overrun of whole periods, go at once
    // (as the latest slot that has begun) and rejoin the grid: missed ticks
    // are not replayed.
    const elapsed = now() - this.start
    const next = this.slot + 1
    this.slot = next * this.period <= elapsed ? Math.max(next, Math.floor(elapsed / this.period)) : next
    this.schedule()
    this.onTick()
  }
}

const run = (options: WorkerOptions) => {
  const port = parentPort!
  const post = (message: FromWorker, transfer?: ReadonlyArray<ArrayBuffer>) =>
    port.postMessage(message, transfer as Array<ArrayBuffer> | undefined)
  let latest: Readonly<Record<string, number>> = {}
  let dispatched = 0
  const queue = new ActionQueue(options.maxQueuedActions)

  // This thread's one job that is timed: put it ahead of the process's other
  // threads where the system allows (see ThreadPriority).
  ThreadPriority.raiseCurrentThread()
  // Compile the send path before the first tick needs it (the first call of
  // cold code costs about a millisecond).
  encodeApplyAction([1, 1], new Float32Array(1), { warmup: 0 })

  const dispatcher: Dispatcher = new Dispatcher(
    queue,
    (action, due) => {
      if (!socket.isOpen) return false
      socket.send([encodeApplyAction(action.shape, action.data, latest)], () => {})
      post({ t: "dispatched", count: ++dispatched, at: now(), due })
      return true
    },
    () => socket.resumeReading()
  )

  const socket = WebSocketClient.connect({
    ...options.connect,
    maxReadBytes,
    pauseReading: () => dispatcher.imminent()
  }, {
    onOpen: () => post({ t: "open" }),
    onMessage: (message) => {
      const buffer = message.buffer as ArrayBuffer
      post({ t: "message", buffer, offset: message.byteOffset, length: message.byteLength }, [buffer])
    },
    onClose: (code, reason, error) => {
      dispatcher.end()
      post({ t: "closed", code, reason, error: error === undefined ? undefined : { kind: error.kind, message: error.message } })
      port.close()
    }
  })

  port.on("message", (message: ToWorker) => {
    switch (message.t) {
      case "send":
        // id -1: the sender does not wait for this one
        return socket.send(message.parts, (error) => {
          if (message.id >= 0) post({ t: "done", id: message.id, error: error?.message })
        })
      case "close":
        return socket.close(message.code)
      case "observed":
        latest = message.timestamps
        return
      case "put":
        queue.setCapacity(message.capacity)
        queue.put(message.actions, message.replace)
        return post({ t: "done", id: message.id, pending: queue.size })
      case "clear":
        queue.clear()
        return post({ t: "done", id: message.id, pending: 0 })
      case "pending":
        return post({ t: "done", id: message.id, pending: queue.size })
      case "start":
        dispatcher.begin(message.periodMillis)
        return post({ t: "done", id: message.id })
      case "stop":
        dispatcher.end()
        socket.resumeReading()
        return post({ t: "done", id: message.id })
    }
  })
}

if (!isMainThread && parentPort !== null && (workerData as { chiralWebSocket?: WorkerOptions })?.chiralWebSocket) {
  run((workerData as { chiralWebSocket: WorkerOptions }).chiralWebSocket)
}
