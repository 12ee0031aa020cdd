/**
 * The recorder's writer, on a worker thread of its own: decodes frames,
 * converts them to Foxglove messages, compresses chunks and writes the file
 * (`FrameLog`, `EpisodeWriter`). On the thread that forwards frames all of
 * that would hold up the next frame; here it costs that thread one copy of
 * each frame and a message.
 *
 * This file is the worker's entry; `Recorder` starts it. Messages are handled
 * strictly one after another (McapWriter requires it). Each frame is answered
 * with `done` (so the sender knows how many bytes are still waiting), and
 * `close` with `closed` once the file is complete.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads"
import { EpisodeWriter, type EpisodeWriterOptions } from "./EpisodeWriter.js"
import { type Direction, FrameLog, type FrameLogCounts } from "./FrameLog.js"

export interface WorkerOptions {
  readonly path: string
  readonly writer: EpisodeWriterOptions
}

export type ToWorker =
  | {
    readonly t: "frame"
    readonly direction: Direction
    readonly connection: string
    readonly bytes: Uint8Array
    /** When the frame was received (ms since the Unix epoch, fractional). */
    readonly at: number
  }
  /** An MCAP metadata record. */
  | { readonly t: "metadata"; readonly name: string; readonly values: ReadonlyArray<readonly [string, string]> }
  | { readonly t: "close" }

export interface WorkerStats {
  readonly counts: FrameLogCounts
  /** Bytes in the file. */
  readonly fileBytes: number
  readonly messages: number
}

export type FromWorker =
  | { readonly t: "opened" }
  | { readonly t: "done"; readonly bytes: number; readonly stats: WorkerStats }
  | { readonly t: "closed"; readonly stats: WorkerStats }
  | { readonly t: "failed"; readonly message: string }

if (!isMainThread && parentPort !== null && (workerData as { chiralRecorder?: WorkerOptions })?.chiralRecorder) {
  const port = parentPort
  const options = (workerData as { chiralRecorder: WorkerOptions }).chiralRecorder
  const post = (message: FromWorker) => port.postMessage(message)
  let failed = false
  let log: FrameLog | undefined
  let writer: EpisodeWriter | undefined
  let last: WorkerStats = {
    counts: { frames: 0, observations: 0, actions: 0, undecodable: 0, skippedImages: [] },
    fileBytes: 0,
    messages: 0
  }
  const stats = (): WorkerStats => (last = { counts: log!.counts, fileBytes: Number(writer!.bytes), messages: writer!.messages })
  const fail = (error: unknown) => {
    if (failed) return
    failed = true
    post({ t: "failed", message: error instanceof Error ? error.message : String(error) })
  }

  let chain: Promise<void> = EpisodeWriter.open(options.path, options.writer).then(
    (opened) => {
      writer = opened
      log = new FrameLog(opened)
      post({ t: "opened" })
    },
    fail
  )

  const handle = async (message: ToWorker): Promise<void> => {
    if (failed) {
      // Keep answering, so the sender's count of waiting bytes stays right and closing ends.
      if (message.t === "frame") post({ t: "done", bytes: message.bytes.byteLength, stats: last })
      if (message.t === "close") {
        await writer?.close().catch(() => undefined)
        post({ t: "closed", stats: last })
      }
      return
    }
    switch (message.t) {
      case "frame":
        await log!.frame(message.direction, message.connection, message.bytes, message.at)
        return post({ t: "done", bytes: message.bytes.byteLength, stats: stats() })
      case "metadata":
        return writer!.metadata(message.name, new Map(message.values))
      case "close":
        await writer!.close()
        return post({ t: "closed", stats: stats() })
    }
  }

  port.on("message", (message: ToWorker) => {
    chain = chain.then(() => handle(message)).catch(fail)
  })
}
