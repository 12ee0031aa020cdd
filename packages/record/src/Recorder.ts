/**
 * Records frames to an MCAP episode without ever making the caller wait.
 *
 * `record` copies the frame and posts it to the writer's worker thread
 * (`RecorderWorker`) and returns at once. The bytes posted but not yet
 * written are bounded (`maxPendingBytes`, default 256 MiB, about 15 frames of
 * an 8-camera 640×480 robot with depth): past the bound, and after the writer
 * failed (disk full…), frames are dropped from the recording — counted in
 * `stats`, written to the file's `chiral.recording` metadata record at close,
 * and reported by whoever shows the stats — never queued without bound and
 * never waited for. Forwarding, the robot and the policy do not slow down
 * for the disk.
 *
 * Closing the scope writes what is pending, the summary and the footer, so a
 * recording interrupted by Ctrl-C is a complete, indexed file. Until then
 * the writer puts what it has in the file as it goes: a recorder killed
 * without closing loses the chunk it was filling (4 MiB before compression),
 * the last second's records (see `EpisodeWriter`), and the frames still
 * waiting for the disk: none while the disk keeps up, up to
 * `maxPendingBytes` when it does not.
 */
import { Worker } from "node:worker_threads"
import { Effect, Schema, type Scope } from "effect"
import type { EpisodeWriterOptions } from "./EpisodeWriter.js"
import type { Direction } from "./FrameLog.js"
import type { FromWorker, ToWorker, WorkerOptions, WorkerStats } from "./RecorderWorker.js"

export type { Direction } from "./FrameLog.js"

/** The recording could not be started or ended (the file could not be created or completed). */
export class RecordError extends Schema.TaggedError<RecordError>()("RecordError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

export interface RecorderOptions {
  /** The MCAP file to create (an existing one is replaced). */
  readonly path: string
  readonly writer?: EpisodeWriterOptions | undefined
  /** Bytes handed to the writer and not written yet, beyond which frames are dropped. Default 256 MiB. */
  readonly maxPendingBytes?: number | undefined
}

export interface RecorderStats {
  /** Frames handed to `record`. */
  readonly offered: number
  /** Of those, frames left out of the recording (the writer was behind, or failed). */
  readonly dropped: number
  readonly droppedBytes: number
  /** Bytes handed over and not written yet. */
  readonly pendingBytes: number
  /** Bytes of the frames the writer has processed (before conversion and compression). */
  readonly recordedBytes: number
  /** What the writer has done (frames, observations, actions, file size). */
  readonly written: WorkerStats
  /** Why the writer stopped, if it did. */
  readonly failure: string | undefined
}

/** A frame as one buffer, or as the parts of one frame in order (an `OutgoingFrame`). */
export type Frame = Uint8Array | ReadonlyArray<Uint8Array>

const frameSize = (frame: Frame): number => {
  if (frame instanceof Uint8Array) return frame.byteLength
  let n = 0
  for (const part of frame) n += part.byteLength
  return n
}

/** A copy of the frame in one buffer of its own. */
const copyOf = (frame: Frame, size: number): Uint8Array => {
  // Not `frame.slice()`: on a Node Buffer (what sockets hand out) that is a
  // view, and moving it to the writer detached the socket chunk's other frames.
  if (frame instanceof Uint8Array) return new Uint8Array(frame)
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of frame) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

/**
 * Bytes a received frame's buffer may hold before it: the lead that puts its
 * payload on an 8-byte boundary (`frameAlignment`: our WebSocket client,
 * Zenoh's `payloadAlignment`). Fewer than the smallest chiral frame, so no
 * other frame can be in them.
 */
const maxLeadBytes = 7

/**
 * A frame that is the whole of a plain ArrayBuffer but for an alignment lead:
 * moving that buffer moves nothing else. A frame with bytes after it never is:
 * transports hand out several small frames as views into one read or batch,
 * and moving the first detached the others (a Zenoh peer's probes, queued into
 * one batch on a busy machine, made the proxy's forwarding fail).
 */
const movable = (frame: Frame): frame is Uint8Array =>
  frame instanceof Uint8Array && frame.buffer instanceof ArrayBuffer && frame.byteOffset <= maxLeadBytes &&
  frame.byteOffset + frame.byteLength === frame.buffer.byteLength

export interface Recorder {
  readonly path: string
  /**
   * Hands one frame to the writer; never waits. `receivedAt` (ms since the
   * Unix epoch, fractional; default now) is the time it is recorded with.
   * Returns false when the frame was dropped from the recording.
   *
   * `owned`: the caller will never touch the frame's bytes again, nor will
   * anybody else. A frame that is then the whole of its ArrayBuffer (a
   * received message in a buffer of its own) is moved to the writer without
   * a copy, and its buffer is detached here; any other frame is copied.
   */
  readonly record: (direction: Direction, connection: string, frame: Frame, receivedAt?: number, owned?: boolean) => boolean
  /** Adds an MCAP metadata record. */
  readonly metadata: (name: string, values: ReadonlyMap<string, string>) => void
  readonly stats: () => RecorderStats
}

/** Wall-clock time in ms since the Unix epoch, with sub-millisecond resolution. */
export const now = (): number => performance.timeOrigin + performance.now()

/** The worker's built script: next to this module in dist/, or in dist/ when this runs from source (tests). */
const workerScript = (): URL =>
  import.meta.url.endsWith(".ts") ? new URL("../dist/RecorderWorker.js", import.meta.url) : new URL("./RecorderWorker.js", import.meta.url)

const emptyStats: WorkerStats = {
  counts: { frames: 0, observations: 0, actions: 0, undecodable: 0, skippedImages: [] },
  fileBytes: 0,
  messages: 0
}

/** What this thread knows of the writer thread, as its messages tell it. */
interface WriterState {
  /** Bytes posted to it and not yet written. */
  pendingBytes: number
  /** Bytes it has written. */
  recordedBytes: number
  written: WorkerStats
  /** Why it failed (the first reason); undefined while it works. */
  failure: string | undefined
  /** It closed the file. */
  ended: boolean
  /** Waiting for the file to be opened (or not: the reason) / closed. */
  opened: ((error?: string) => void) | undefined
  closed: (() => void) | undefined
}

/**
 * Starts the writer thread in the scope (terminated with it) and tracks what
 * it reports; returns once it has opened `options.path`, or fails with why
 * it could not.
 */
const startWriter = (options: RecorderOptions) =>
  Effect.gen(function*() {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(workerScript(), {
          execArgv: [],
          workerData: { chiralRecorder: { path: options.path, writer: options.writer ?? {} } satisfies WorkerOptions }
        })
      ),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const state: WriterState = {
      pendingBytes: 0,
      recordedBytes: 0,
      written: emptyStats,
      failure: undefined,
      ended: false,
      opened: undefined,
      closed: undefined
    }
    const fail = (message: string) => {
      state.failure ??= message
      state.opened?.(message)
      state.closed?.()
    }
    worker.on("message", (message: FromWorker) => {
      switch (message.t) {
        case "opened":
          return state.opened?.()
        case "done":
          state.pendingBytes -= message.bytes
          state.recordedBytes += message.bytes
          state.written = message.stats
          return
        case "closed":
          state.written = message.stats
          state.ended = true
          return state.closed?.()
        case "failed":
          return fail(message.message)
      }
    })
    worker.on("error", (error) => fail(error.message))
    worker.on("exit", (code) => {
      if (!state.ended) fail(`the writer thread exited (${code})`)
    })
    const post = (message: ToWorker, transfer?: ReadonlyArray<ArrayBuffer>) =>
      worker.postMessage(message, transfer as Array<ArrayBuffer> | undefined)

    yield* Effect.callback<void, RecordError>((resume) => {
      state.opened = (error) =>
        resume(error === undefined ? Effect.void : Effect.fail(new RecordError({ path: options.path, reason: error })))
    })
    state.opened = undefined
    return { state, post }
  })

/** Starts a recording to `options.path`; it is completed and closed with the scope. */
export const make = (options: RecorderOptions): Effect.Effect<Recorder, RecordError, Scope.Scope> =>
  Effect.gen(function*() {
    const maxPending = options.maxPendingBytes ?? 256 * 1024 * 1024
    const { post, state } = yield* startWriter(options)
    let offered = 0
    let dropped = 0
    let droppedBytes = 0

    const stats = (): RecorderStats => ({
      offered,
      dropped,
      droppedBytes,
      pendingBytes: state.pendingBytes,
      recordedBytes: state.recordedBytes,
      written: state.written,
      failure: state.failure
    })

    // The recording's own account goes in the file, then the writer completes it.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (state.failure !== undefined) return
        post({
          t: "metadata",
          name: "chiral.recording",
          values: [
            ["frames_offered", String(offered)],
            ["frames_dropped", String(dropped)],
            ["bytes_dropped", String(droppedBytes)],
            ["undecodable_frames", String(state.written.counts.undecodable)],
            ["skipped_images", JSON.stringify(state.written.counts.skippedImages)]
          ]
        })
        yield* Effect.callback<void>((resume) => {
          state.closed = () => resume(Effect.void)
          post({ t: "close" })
        })
      })
    )

    const record = (direction: Direction, connection: string, frame: Frame, receivedAt = now(), owned = false): boolean => {
      offered++
      const size = frameSize(frame)
      if (state.failure !== undefined || state.pendingBytes + size > maxPending) {
        dropped++
        droppedBytes += size
        return false
      }
      // At most one copy: the writer gets a buffer of its own, moved rather than cloned.
      const bytes = owned && movable(frame) ? frame : copyOf(frame, size)
      state.pendingBytes += bytes.byteLength
      post({ t: "frame", direction, connection, bytes, at: receivedAt }, [bytes.buffer as ArrayBuffer])
      return true
    }

    return {
      path: options.path,
      record,
      metadata: (name, values) => {
        if (state.failure === undefined) post({ t: "metadata", name, values: Array.from(values) })
      },
      stats
    } satisfies Recorder
  })
