/**
 * Reads an episode written by `EpisodeWriter` back (`@mcap/core`'s indexed
 * reader): its metadata, resets, actions, and the observations, each rebuilt
 * as the robot sent it — same image and depth bytes, dtypes and shapes, and
 * exactly the recorded timestamps, K and T (from `/observation`, see
 * `Topics`).
 *
 * Opening reads only the small topics (`/observation`, `/action`) and the
 * metadata records; pixels are read one observation at a time
 * (`observation(seq)`), through the index, so a replay of a long 8-camera
 * episode holds one observation in memory, not the file.
 *
 * A file the recorder never completed (killed, crashed: no summary, no
 * footer, cut anywhere, mid-record included) is read from its start, record
 * by record, up to its last complete one; `incomplete` says how far. Its
 * pixels are then read chunk by chunk, the chunks found by their time range.
 */
import type { FileHandle } from "node:fs/promises"
import { open as openFile } from "node:fs/promises"
import type { CameraFrame, Observation, Proprio, UserMap } from "@chiral/protocol"
import { Dtype, numberToHalf as numberToHalfBits, Tensor } from "@chiral/protocol"
import { MCAP_MAGIC, McapIndexedReader, McapRecordBuilder, McapStreamReader, Opcode } from "@mcap/core"
import type { DecompressHandlers, TypedMcapRecord } from "@mcap/core"
import { Effect, type Scope } from "effect"
import * as Json from "./Json.js"
import { RecordError } from "./Recorder.js"

export interface ObservationEntry {
  readonly seq: number
  /** When the recorder received it (ns since the Unix epoch). */
  readonly logTime: bigint
  readonly reply: "reset_response" | "obs_response" | "step_response"
  readonly connection: string
  readonly timestamp: number
  /** Camera name → recorded capture timestamp (s). */
  readonly cameraTimestamps: Readonly<Record<string, number>>
  readonly info: UserMap | undefined
  readonly reward: number | undefined
  readonly terminated: boolean | undefined
  readonly truncated: boolean | undefined
}

export interface RecordedAction {
  readonly logTime: bigint
  readonly type: "apply_action" | "action"
  readonly connection: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  /** Elements, row-major, as numbers (non-finite ones restored). */
  readonly values: ReadonlyArray<number>
  readonly obsTimestamps: Readonly<Record<string, number>>
  /** The number of the last observation recorded before it. */
  readonly seq: number
}

/** How much of a file the recorder never completed could be read. */
export interface Incomplete {
  /** Messages read (all topics). */
  readonly messages: number
  /** Bytes read: the file up to the end of its last complete record. */
  readonly readBytes: number
  /** Bytes in the file. */
  readonly fileBytes: number
}

/** One line saying that `path` was not completed and what of it was read. */
export const incompleteWarning = (path: string, incomplete: Incomplete): string =>
  `${path}: the file was not completed (the recorder stopped without closing it): ${incomplete.messages} message${incomplete.messages === 1 ? "" : "s"} read, up to byte ${incomplete.readBytes} of ${incomplete.fileBytes}`

export interface Episode {
  readonly path: string
  /** Set when the file has no summary or footer (the recorder was killed): what was read of it. */
  readonly incomplete?: Incomplete | undefined
  /**
   * The robot's metadata (the last `chiral.metadata` record): `chiral record` asks for it on each
   * robot connection; an in-process recording has it if a client asked for it.
   */
  readonly metadata: UserMap | undefined
  /** Observations in recorded order (log time). */
  readonly observations: ReadonlyArray<ObservationEntry>
  readonly actions: ReadonlyArray<RecordedAction>
  /** Other metadata records (`chiral.recording`, `chiral.reset`, …), in file order. */
  readonly records: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyMap<string, string> }>
  /** The full observation `seq`, with its pixels. */
  readonly observation: (seq: number) => Effect.Effect<Observation, RecordError>
}

// ── protobuf: the fields of a RawImage we need ───────────────────────────────

/** Field number → value (numbers for varint/fixed32, byte views for length-delimited) of one message. */
const protobufFields = (bytes: Uint8Array): Map<number, number | Uint8Array> => {
  const out = new Map<number, number | Uint8Array>()
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let i = 0
  const varint = () => {
    let result = 0
    let scale = 1
    for (;;) {
      const b = bytes[i++]!
      result += (b & 0x7f) * scale
      if (b < 0x80) return result
      scale *= 128
    }
  }
  while (i < bytes.byteLength) {
    const key = varint()
    const field = Math.floor(key / 8)
    switch (key & 7) {
      case 0:
        out.set(field, varint())
        break
      case 1:
        out.set(field, view.getFloat64(i, true))
        i += 8
        break
      case 2: {
        const n = varint()
        out.set(field, bytes.subarray(i, i + n))
        i += n
        break
      }
      case 5:
        out.set(field, view.getUint32(i, true))
        i += 4
        break
      default:
        throw new Error(`unsupported protobuf wire type ${key & 7}`)
    }
  }
  return out
}

/** RawImage `data` (field 6). */
const rawImageData = (bytes: Uint8Array): Uint8Array => {
  const data = protobufFields(bytes).get(6)
  return data instanceof Uint8Array ? data : new Uint8Array(0)
}

// ── reading ───────────────────────────────────────────────────────────────────

/** `length` bytes of the file at `offset`, or fewer at its end. */
const readAt = async (handle: FileHandle, offset: number, length: number): Promise<Uint8Array> => {
  const buffer = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done === length ? buffer : buffer.subarray(0, done)
}

const readable = (handle: FileHandle, size: bigint) => ({
  size: () => Promise.resolve(size),
  read: async (offset: bigint, length: bigint) => {
    const bytes = await readAt(handle, Number(offset), Number(length))
    if (bytes.byteLength < Number(length)) throw new Error("unexpected end of file")
    return bytes
  }
})

const decompressHandlers = async (): Promise<DecompressHandlers> => {
  const zstd = await import("@foxglove/wasm-zstd")
  await zstd.isLoaded
  return { zstd: (data, size) => zstd.decompress(data, Number(size)) }
}

const utf8 = new TextDecoder()
const json = (bytes: Uint8Array): Record<string, unknown> => JSON.parse(utf8.decode(bytes)) as Record<string, unknown>

interface CameraRecord {
  readonly timestamp: number
  readonly K: ReadonlyArray<unknown>
  readonly T: ReadonlyArray<unknown>
  readonly image: { readonly dtype: string; readonly shape: ReadonlyArray<number> }
  readonly depth: { readonly dtype: string; readonly shape: ReadonlyArray<number> } | null
}

/** A tensor of `dtype` and `shape` over `bytes` (copied: the view must outlive the read buffer's reuse). */
const tensorOf = (dtype: string, shape: ReadonlyArray<number>, bytes: Uint8Array, what: string): Tensor => {
  if (!Dtype.is(dtype)) throw new Error(`${what}: unknown dtype ${dtype}`)
  const expected = Tensor.elementCount(shape) * Tensor.itemSize(dtype)
  if (bytes.byteLength !== expected) throw new Error(`${what}: ${bytes.byteLength} bytes recorded, ${dtype}[${shape.join(",")}] needs ${expected}`)
  return Tensor.fromBytes(dtype, shape, bytes.slice())
}

const proprioOf = (name: string, record: Record<string, unknown>): Proprio => {
  const dtype = String(record["dtype"])
  const shape = record["shape"] as ReadonlyArray<number>
  const values = (record["values"] as ReadonlyArray<unknown>).map((v) => typeof v === "boolean" ? Number(v) : Json.numberOf(v))
  if (!Dtype.is(dtype)) throw new Error(`proprio ${name}: unknown dtype ${dtype}`)
  const data = Tensor.zeros(dtype, shape)
  if (dtype === "float16") {
    // Recorded as numbers; back to half precision bits.
    for (let i = 0; i < values.length; i++) (data.data as Uint16Array)[i] = numberToHalfBits(values[i]!)
  } else if (dtype === "int64" || dtype === "uint64") {
    for (let i = 0; i < values.length; i++) (data.data as BigInt64Array)[i] = BigInt(Math.trunc(values[i]!))
  } else {
    for (let i = 0; i < values.length; i++) (data.data as Float64Array)[i] = values[i]!
  }
  return { name, data }
}

interface StoredMessage {
  readonly channelId: number
  readonly sequence: number
  readonly logTime: bigint
  readonly data: Uint8Array
}

/** What the episode is read from: the file's index, or its records one after another. */
interface Source {
  /** Channel id → topic. */
  readonly topics: ReadonlyMap<number, string>
  /** `/observation` and `/action` messages, in log time order. */
  readonly small: () => AsyncIterable<StoredMessage>
  /** Metadata records, in file order. */
  readonly metadata: () => AsyncIterable<{ readonly name: string; readonly metadata: ReadonlyMap<string, string> }>
  /** The messages logged at `logTime` (and possibly others). */
  readonly at: (logTime: bigint) => AsyncIterable<StoredMessage>
  readonly incomplete: Incomplete | undefined
}

const indexed = (reader: McapIndexedReader): Source => ({
  topics: new Map(Array.from(reader.channelsById.values(), (c) => [c.id, c.topic])),
  small: () => reader.readMessages({ topics: ["/observation", "/action"] }),
  metadata: () => reader.readMetadata(),
  at: (logTime) => reader.readMessages({ startTime: logTime, endTime: logTime }),
  incomplete: undefined
})

/** Bytes before each record's content: its opcode and its content's length (uint64). */
const recordHeaderBytes = 9

/**
 * Reads a file that has no usable summary (the recorder never completed it)
 * from its start, one top-level record at a time, up to the last one that is
 * complete and parses: a record cut short, or one that does not parse (a
 * chunk cut mid-way, whose CRC fails), ends the reading, and nothing of it is
 * kept. Only the small topics are kept in memory; chunks are remembered by
 * offset and time range and read again for an observation's pixels.
 */
const sequential = async (handle: FileHandle, fileBytes: number, handlers: DecompressHandlers): Promise<Source> => {
  const reader = new McapStreamReader({ includeChunks: true, decompressHandlers: handlers })
  reader.append(Uint8Array.from(MCAP_MAGIC))
  const channels = new Map<number, Extract<TypedMcapRecord, { type: "Channel" }>>()
  const small: Array<StoredMessage> = []
  const metadata: Array<{ name: string; metadata: ReadonlyMap<string, string> }> = []
  const chunks: Array<{ offset: number; length: number; start: bigint; end: bigint }> = []
  let messages = 0
  let offset = MCAP_MAGIC.length
  for (;;) {
    const header = await readAt(handle, offset, recordHeaderBytes)
    if (header.byteLength < recordHeaderBytes) break
    const view = new DataView(header.buffer, header.byteOffset, header.byteLength)
    const opcode = view.getUint8(0)
    const length = recordHeaderBytes + Number(view.getBigUint64(1, true))
    // Past the data is the summary, which is what could not be read: no message is there.
    if (opcode === Opcode.DATA_END || opcode === Opcode.FOOTER || offset + length > fileBytes) break
    const record = await readAt(handle, offset, length)
    // Kept only once the whole record parsed: a chunk whose end is garbage gives nothing.
    const parsed: Array<TypedMcapRecord> = []
    try {
      reader.append(record)
      for (let r = reader.nextRecord(); r !== undefined; r = reader.nextRecord()) parsed.push(r)
    } catch {
      break
    }
    for (const r of parsed) {
      switch (r.type) {
        case "Channel":
          channels.set(r.id, r)
          break
        case "Chunk":
          chunks.push({ offset, length, start: r.messageStartTime, end: r.messageEndTime })
          break
        case "Metadata":
          metadata.push({ name: r.name, metadata: r.metadata })
          break
        case "Message": {
          messages++
          const topic = channels.get(r.channelId)?.topic
          if (topic === "/observation" || topic === "/action") small.push(r)
          break
        }
      }
    }
    offset += length
  }
  // Log time order, as the index gives it (messages of one time keep their file order).
  small.sort((a, b) => a.logTime < b.logTime ? -1 : a.logTime > b.logTime ? 1 : 0)

  /** A reader for chunks read again: it must know the channels before their messages. */
  const chunkReader = () => {
    const again = new McapStreamReader({ noMagicPrefix: true, decompressHandlers: handlers })
    const known = new McapRecordBuilder()
    for (const channel of channels.values()) known.writeChannel(channel)
    again.append(known.buffer)
    while (again.nextRecord() !== undefined) continue
    return again
  }
  return {
    topics: new Map(Array.from(channels.values(), (c) => [c.id, c.topic])),
    small: async function*() {
      yield* small
    },
    metadata: async function*() {
      yield* metadata
    },
    at: async function*(logTime) {
      const again = chunkReader()
      for (const chunk of chunks) {
        if (logTime < chunk.start || logTime > chunk.end) continue
        again.append(await readAt(handle, chunk.offset, chunk.length))
        for (let r = again.nextRecord(); r !== undefined; r = again.nextRecord()) {
          if (r.type === "Message" && r.logTime === logTime) yield r
        }
      }
    },
    incomplete: { messages, readBytes: offset, fileBytes }
  }
}

/** Whether the file starts with MCAP's magic bytes. */
const startsWithMagic = async (handle: FileHandle): Promise<boolean> => {
  const prefix = await readAt(handle, 0, MCAP_MAGIC.length)
  return prefix.byteLength === MCAP_MAGIC.length && MCAP_MAGIC.every((b, i) => prefix[i] === b)
}

/** The small topics and the metadata records, in file order. */
const readIndex = async (source: Source) => {
  const topics = source.topics
  const observations: Array<ObservationEntry> = []
  const actions: Array<RecordedAction> = []
  for await (const m of source.small()) {
    const record = json(m.data)
    if (topics.get(m.channelId) === "/action") {
      actions.push({
        logTime: m.logTime,
        type: record["type"] as RecordedAction["type"],
        connection: String(record["connection"]),
        dtype: String(record["dtype"]),
        shape: record["shape"] as ReadonlyArray<number>,
        values: (record["values"] as ReadonlyArray<unknown>).map(Json.numberOf),
        obsTimestamps: record["obs_timestamps"] as Record<string, number>,
        seq: m.sequence
      })
      continue
    }
    const cameras = record["cameras"] as Record<string, CameraRecord>
    observations.push({
      seq: record["seq"] as number,
      logTime: m.logTime,
      reply: record["reply"] as ObservationEntry["reply"],
      connection: String(record["connection"]),
      timestamp: record["timestamp"] as number,
      cameraTimestamps: Object.fromEntries(Object.entries(cameras).map(([name, c]) => [name, c.timestamp])),
      info: record["info"] === undefined ? undefined : Json.fromJsonValue(record["info"]) as UserMap,
      reward: record["reward"] === undefined ? undefined : Json.numberOf(record["reward"]),
      terminated: record["terminated"] as boolean | undefined,
      truncated: record["truncated"] as boolean | undefined
    })
  }
  const records: Array<{ name: string; values: ReadonlyMap<string, string> }> = []
  for await (const r of source.metadata()) records.push({ name: r.name, values: r.metadata })
  return { observations, actions, records }
}

/** Observation `entry` with its pixels: every message of its `seq` at its log time. */
const readObservation = async (source: Source, entry: ObservationEntry): Promise<Observation> => {
  const seq = entry.seq
  const parts = new Map<string, Uint8Array>()
  for await (const m of source.at(entry.logTime)) {
    if (m.sequence === seq && m.logTime === entry.logTime) parts.set(source.topics.get(m.channelId)!, m.data)
  }
  const own = parts.get("/observation")
  if (own === undefined) throw new Error(`observation ${seq}: not found at its log time`)
  const record = json(own)
  const cameraRecords = record["cameras"] as Record<string, CameraRecord>
  const cameras: Array<CameraFrame> = Object.entries(cameraRecords).map(([name, c]) => {
    const image = parts.get(`/${name}/image`)
    if (image === undefined) throw new Error(`observation ${seq}: no image for ${name}`)
    const depthBytes = c.depth === null ? undefined : parts.get(`/${name}/depth`)
    if (c.depth !== null && depthBytes === undefined) throw new Error(`observation ${seq}: no depth for ${name}`)
    return {
      name,
      timestamp: c.timestamp,
      intrinsics: Float64Array.from(c.K, Json.numberOf),
      extrinsics: Float64Array.from(c.T, Json.numberOf),
      image: tensorOf(c.image.dtype, c.image.shape, rawImageData(image), `${name} image`),
      depth: c.depth === null ? null : tensorOf(c.depth.dtype, c.depth.shape, rawImageData(depthBytes!), `${name} depth`)
    }
  })
  const proprios = (record["proprios"] as ReadonlyArray<string>).map((name) => {
    const bytes = parts.get(`/proprio/${name}`)
    if (bytes === undefined) throw new Error(`observation ${seq}: no proprio ${name}`)
    return proprioOf(name, json(bytes))
  })
  return {
    timestamp: record["timestamp"] as number,
    cameras,
    proprios,
    extra: Json.fromJsonValue(record["extra"] ?? {}) as UserMap
  } satisfies Observation
}

/**
 * Opens the episode at `path`; the file stays open for `observation` until
 * the scope closes. A file the recorder did not complete (no valid summary
 * or footer) is read up to its last complete record, and `incomplete` says
 * so. Fails with a `RecordError` when it cannot be read, is not an MCAP file
 * (no MCAP magic at its start), or is not a chiral episode (neither a
 * `/observation` topic nor a `chiral.` record).
 */
export const open = (path: string): Effect.Effect<Episode, RecordError, Scope.Scope> =>
  Effect.gen(function*() {
    const failed = (reason: unknown) =>
      new RecordError({ path, reason: reason instanceof Error ? reason.message : String(reason) })
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => openFile(path, "r"), catch: failed }),
      (h) => Effect.promise(() => h.close())
    )
    const source = yield* Effect.tryPromise({
      try: async (): Promise<Source> => {
        const { size } = await handle.stat()
        const handlers = await decompressHandlers()
        try {
          return indexed(await McapIndexedReader.Initialize({ readable: readable(handle, BigInt(size)), decompressHandlers: handlers }))
        } catch {
          // No summary or footer to read (a recording cut short), or a file that is no MCAP at all.
          if (size === 0) throw new Error("not an MCAP file (it is empty)")
          if (!(await startsWithMagic(handle))) throw new Error(`not an MCAP file (it does not start with MCAP's magic bytes; ${size} bytes)`)
          return await sequential(handle, size, handlers)
        }
      },
      catch: failed
    })
    const { actions, observations, records } = yield* Effect.tryPromise({ try: () => readIndex(source), catch: failed })
    const chiral = Array.from(source.topics.values()).includes("/observation") || records.some((r) => r.name.startsWith("chiral."))
    if (!chiral) {
      return yield* Effect.fail(
        new RecordError({
          path,
          reason: source.incomplete === undefined
            ? "no chiral topics or records: not a chiral episode"
            : `the file was not completed (the recorder stopped without closing it) and none of its first ${source.incomplete.readBytes} of ${source.incomplete.fileBytes} bytes is a chiral topic or record`
        })
      )
    }
    const metadataRecord = records.findLast((r) => r.name === "chiral.metadata")
    const metadata = metadataRecord === undefined
      ? undefined
      : Object.fromEntries(Array.from(metadataRecord.values, ([k, v]) => [k, Json.fromJsonValue(JSON.parse(v))]))
    const bySeq = new Map(observations.map((o) => [o.seq, o]))

    const observation = (seq: number): Effect.Effect<Observation, RecordError> =>
      Effect.tryPromise({
        try: () => {
          const entry = bySeq.get(seq)
          if (entry === undefined) return Promise.reject(new Error(`no observation ${seq}`))
          return readObservation(source, entry)
        },
        catch: failed
      })

    return { path, incomplete: source.incomplete, metadata, observations, actions, records, observation } satisfies Episode
  })
