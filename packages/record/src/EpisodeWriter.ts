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
 * per record.
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
  /** Uncompressed chunk size before a chunk is closed (bytes). Default 4 MiB. */
  readonly chunkBytes?: number | undefined
  /** Small records gathered before one write to the file (bytes). Default 4 MiB. */
  readonly flushBytes?: number | undefined
  /** The MCAP header's `profile`/`library`. */
  readonly library?: string | undefined
}

/** The `library` field written in the MCAP header. */
export const library = "chiral-ts @chiral/record"

/** Records at least this large are written directly rather than copied into a batch. */
const directBytes = 1024 * 1024

/**
 * Stages small records in one buffer and writes it with the next large record
 * (a chunk) in one `writev`, or alone when it is full.
 */
class BatchedFile {
  private readonly file: FileHandle
  private readonly stage: Uint8Array
  private staged = 0
  private written = 0n

  constructor(file: FileHandle, stageBytes: number) {
    this.file = file
    this.stage = new Uint8Array(Math.max(stageBytes, directBytes))
  }

  position = (): bigint => this.written + BigInt(this.staged)

  write = async (buffer: Uint8Array): Promise<void> => {
    // McapWriter reuses its buffer once write resolves: a small record is
    // copied into the stage; a large one (a chunk) is written, after the
    // stage, before write resolves, so it needs no copy.
    if (buffer.byteLength >= directBytes) return this.writeOut(buffer)
    if (this.staged + buffer.byteLength > this.stage.byteLength) await this.writeOut()
    this.stage.set(buffer, this.staged)
    this.staged += buffer.byteLength
  }

  flush = (): Promise<void> => this.writeOut()

  private async writeOut(extra?: Uint8Array): Promise<void> {
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

  /** Creates (or truncates) `path` and writes the MCAP header. */
  static async open(path: string, options: EpisodeWriterOptions = {}): Promise<EpisodeWriter> {
    const compression = options.compression ?? "zstd"
    const compressChunk = compression === "zstd" ? await zstdCompressor(options.zstdLevel ?? 1) : undefined
    const handle = await open(path, "w")
    try {
      const file = new BatchedFile(handle, options.flushBytes ?? 4 * 1024 * 1024)
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

  /** Bytes in the file so far, including what is batched for the next write. */
  get bytes(): bigint {
    return this.file.position()
  }

  /** Writes the summary and footer, and closes the file. */
  async close(): Promise<void> {
    try {
      await this.writer.end()
      await this.file.flush()
    } finally {
      await this.handle.close()
    }
  }
}
