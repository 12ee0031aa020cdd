/**
 * Writes an episode as an MCAP file (`@mcap/core`): chunked, with message,
 * chunk, metadata index and statistics in the summary, so Foxglove and
 * Lichtblick seek in it at once. Chunks are zstd-compressed by default with
 * `@foxglove/wasm-zstd` (WebAssembly, shipped built in the npm package: no
 * native build), level 1; `compression: "none"` writes them as they are.
 *
 * Plain promises, not Effect: it runs in the recorder's worker thread, where
 * one call at a time is awaited (McapWriter requires it). Small records are
 * gathered and written with the next chunk (one `writev`), never one write
 * per record, and at most `flushMillis` (1 s) after they were handed over.
 *
 * What the recorder's death (`kill -9`, a crash) loses of a file it never
 * completed: the chunk McapWriter is still filling, which is in memory only —
 * at most `chunkBytes` (4 MiB) of messages before compression: 36
 * observations of two 160×120 RGB cameras, a few images of an 8-camera
 * 640×480 robot — and the records handed to the file in the last
 * `flushMillis` (the recorder's own queue of frames not yet handed over
 * comes on top: `Recorder`). Everything before is written (to the OS: a crash of the
 * machine may lose what it had not put on the disk yet), and `Episode.open`
 * reads it back.
 *
 * Message times: `logTime` is when the recorder received the frame (wall
 * clock, ns since the Unix epoch), `publishTime` the robot's capture time
 * (see `Topics`), `sequence` the observation number (all topics of one
 * observation share it; actions carry the number of the last observation
 * recorded before them).
 */
import type { FileHandle } from "node:fs/promises"
import { open } from "node:fs/promises"
import { McapWriter } from "@mcap/core"
import type { ChannelSpec, TopicMessage } from "./Topics.js"

export type Compression = "zstd" | "none"

export interface EpisodeWriterOptions {
  /** Chunk compression. Default `zstd`. */
  readonly compression?: Compression | undefined
  /** zstd level (1 fastest … 19). Default 1: a robot's frame rate matters more than the last percent of size. */
  readonly zstdLevel?: number | undefined
  /**
   * Uncompressed chunk size before a chunk is closed (bytes). Default 4 MiB.
   * The open chunk is in memory only: a crash loses it (see `EpisodeWriter`).
   */
  readonly chunkBytes?: number | undefined
  /** Small records gathered before one write to the file (bytes). Default 4 MiB. */
  readonly flushBytes?: number | undefined
  /** Longest a gathered record waits for its write to the file (ms). Default 1000. */
  readonly flushMillis?: number | undefined
  /** The MCAP header's `profile`/`library`. */
  readonly library?: string | undefined
}

/** The `library` field written in the MCAP header. */
export const library = "chiral-ts @chiral/record"

/** Records at least this large are written directly rather than copied into a batch. */
const directBytes = 1024 * 1024

/** Runs `callback` after `millis` ms; the returned function cancels it. */
export type Timer = (callback: () => void, millis: number) => () => void

const nodeTimer: Timer = (callback, millis) => {
  // Unref'd: a pending flush must not keep a thread alive that has nothing else to do.
  const handle = setTimeout(callback, millis).unref()
  return () => clearTimeout(handle)
}

/**
 * Stages small records in one buffer and writes it with the next large record
 * (a chunk) in one `writev`, alone when it is full, or `flushMillis` after the
 * first of them was staged: a small robot's compressed chunks would otherwise
 * wait minutes for 4 MiB to gather, none of it on disk (two 160×120 cameras
 * at 10 Hz: 170 kB handed to the file in 30 s, 0 bytes on disk).
 */
class BatchedFile {
  private readonly file: FileHandle
  private readonly stage: Uint8Array
  private readonly flushMillis: number
  private readonly timer: Timer
  private staged = 0
  private written = 0n
  /** Cancels the pending timed flush, if one is armed (the stage holds bytes). */
  private cancelFlush: (() => void) | undefined
  /**
   * The last operation on the file and stage: the timed flush and McapWriter's
   * writes run one after another, never a writev of the stage while a write
   * copies into it or resets it.
   */
  private queue: Promise<void> = Promise.resolve()
  /** Why a timed flush failed: reported by the next write or flush, which would otherwise succeed on a broken file. */
  private failure: unknown = undefined
  private closed = false

  constructor(file: FileHandle, stageBytes: number, flushMillis: number, timer: Timer = nodeTimer) {
    this.file = file
    this.stage = new Uint8Array(Math.max(stageBytes, directBytes))
    this.flushMillis = flushMillis
    this.timer = timer
  }

  /** Bytes handed to the file so far: written, or staged to be within `flushMillis`. */
  position = (): bigint => this.written + BigInt(this.staged)

  write = (buffer: Uint8Array): Promise<void> =>
    this.serially(async () => {
      // McapWriter reuses its buffer once write resolves: a small record is
      // copied into the stage; a large one (a chunk) is written, after the
      // stage, before write resolves, so it needs no copy.
      if (buffer.byteLength >= directBytes) return this.writeOut(buffer)
      if (this.staged + buffer.byteLength > this.stage.byteLength) await this.writeOut()
      this.stage.set(buffer, this.staged)
      this.staged += buffer.byteLength
      if (this.cancelFlush === undefined && !this.closed) {
        this.cancelFlush = this.timer(() => {
          this.cancelFlush = undefined
          this.serially(() => this.writeOut()).catch((error: unknown) => {
            this.failure ??= error
          })
        }, this.flushMillis)
      }
    })

  /** Writes what is staged. */
  flush = (): Promise<void> => this.serially(() => this.writeOut())

  /** Writes what is staged and arms no more timed flushes (the handle is about to close). */
  close = (): Promise<void> => {
    this.closed = true
    this.cancelFlush?.()
    this.cancelFlush = undefined
    return this.flush()
  }

  private serially<A>(operation: () => Promise<A>): Promise<A> {
    const run = this.queue.then(() => {
      if (this.failure !== undefined) throw this.failure
      return operation()
    })
    this.queue = run.then(() => undefined, () => undefined)
    return run
  }

  private async writeOut(extra?: Uint8Array): Promise<void> {
    this.cancelFlush?.()
    this.cancelFlush = undefined
    const batch = this.staged === 0 ? [] : [this.stage.subarray(0, this.staged)]
    if (extra !== undefined) batch.push(extra)
    if (batch.length === 0) return
    const bytes = batch.reduce((n, b) => n + b.byteLength, 0)
    let offset = 0
    while (offset < bytes) {
      const { bytesWritten } = await this.file.writev(offset === 0 ? batch : remaining(batch, offset))
      if (bytesWritten === 0) throw new Error("the file accepted no bytes")
      offset += bytesWritten
    }
    this.staged = 0
    this.written += BigInt(bytes)
  }
}

/** The buffers of `batch` from byte `offset` on (after a short writev). */
const remaining = (batch: ReadonlyArray<Uint8Array>, offset: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let skip = offset
  for (const b of batch) {
    if (skip >= b.byteLength) {
      skip -= b.byteLength
      continue
    }
    out.push(skip === 0 ? b : b.subarray(skip))
    skip = 0
  }
  return out
}

type Compressor = (data: Uint8Array) => { compression: string; compressedData: Uint8Array }

const zstdCompressor = async (level: number): Promise<Compressor> => {
  const zstd = await import("@foxglove/wasm-zstd")
  await zstd.isLoaded
  return (data) => ({ compression: "zstd", compressedData: zstd.compress(data, level) })
}

export class EpisodeWriter {
  private readonly channelIds = new Map<ChannelSpec, number>()
  private readonly schemaIds = new Map<string, number>()
  /** Messages written. */
  messages = 0

  private readonly writer: McapWriter
  private readonly file: BatchedFile
  private readonly handle: FileHandle
  readonly path: string

  private constructor(writer: McapWriter, file: BatchedFile, handle: FileHandle, path: string) {
    this.writer = writer
    this.file = file
    this.handle = handle
    this.path = path
  }

  /**
   * Creates (or truncates) `path` and writes the MCAP header (within
   * `flushMillis`, as every record). `timer` runs the timed flushes (a test's
   * own; default `setTimeout`). Rejects when the file cannot be created.
   */
  static async open(path: string, options: EpisodeWriterOptions = {}, timer?: Timer): Promise<EpisodeWriter> {
    const compression = options.compression ?? "zstd"
    const compressChunk = compression === "zstd" ? await zstdCompressor(options.zstdLevel ?? 1) : undefined
    const handle = await open(path, "w")
    const file = new BatchedFile(handle, options.flushBytes ?? 4 * 1024 * 1024, options.flushMillis ?? 1000, timer)
    try {
      const writer = new McapWriter({
        writable: file,
        useChunks: true,
        useStatistics: true,
        useSummaryOffsets: true,
        useMessageIndex: true,
        useChunkIndex: true,
        useMetadataIndex: true,
        chunkSize: options.chunkBytes ?? 4 * 1024 * 1024,
        ...(compressChunk === undefined ? {} : { compressChunk })
      })
      await writer.start({ profile: "", library: options.library ?? library })
      return new EpisodeWriter(writer, file, handle, path)
    } catch (error) {
      // The header staged by start armed the timed flush: no flush may follow the handle's close.
      await file.close().catch(() => undefined)
      await handle.close()
      throw error
    }
  }

  private async channelId(spec: ChannelSpec): Promise<number> {
    const known = this.channelIds.get(spec)
    if (known !== undefined) return known
    let schemaId = this.schemaIds.get(spec.schemaName)
    if (schemaId === undefined) {
      schemaId = await this.writer.registerSchema({ name: spec.schemaName, encoding: spec.schemaEncoding, data: spec.schema })
      this.schemaIds.set(spec.schemaName, schemaId)
    }
    const id = await this.writer.registerChannel({
      topic: spec.topic,
      schemaId,
      messageEncoding: spec.messageEncoding,
      metadata: new Map()
    })
    this.channelIds.set(spec, id)
    return id
  }

  /** Writes messages received at `logTime` (ns since the Unix epoch). */
  async write(messages: ReadonlyArray<TopicMessage>, logTime: bigint, sequence: number): Promise<void> {
    for (const m of messages) {
      await this.writer.addMessage({
        channelId: await this.channelId(m.channel),
        sequence,
        logTime,
        publishTime: m.publishTime,
        data: m.data
      })
      this.messages++
    }
  }

  /** One MCAP metadata record (a name and string → string map). */
  async metadata(name: string, values: ReadonlyMap<string, string>): Promise<void> {
    await this.writer.addMetadata({ name, metadata: new Map(values) })
  }

  /** Bytes handed to the file so far, including what is batched for the next write (written within `flushMillis`). */
  get bytes(): bigint {
    return this.file.position()
  }

  /** Writes the summary and footer, and closes the file. */
  async close(): Promise<void> {
    let ended: unknown
    try {
      await this.writer.end()
    } catch (error) {
      ended = error
    }
    // Also after a failed end: no timed flush may write to the closed handle;
    // the end's own failure is the one reported.
    try {
      await this.file.close().finally(() => this.handle.close())
    } catch (error) {
      if (ended === undefined) throw error
    }
    if (ended !== undefined) throw ended
  }
}
