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
 */
import type { FileHandle } from "node:fs/promises"
import { open as openFile } from "node:fs/promises"
import type { CameraFrame, Observation, Proprio, UserMap } from "@chiral/protocol"
import { Dtype, numberToHalf as numberToHalfBits, Tensor } from "@chiral/protocol"
import { McapIndexedReader } from "@mcap/core"
import type { DecompressHandlers } from "@mcap/core"
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

export interface Episode {
  readonly path: string
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

const readable = (handle: FileHandle, size: bigint) => ({
  size: () => Promise.resolve(size),
  read: async (offset: bigint, length: bigint) => {
    const buffer = new Uint8Array(Number(length))
    let done = 0
    while (done < buffer.byteLength) {
      const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, Number(offset) + done)
      if (bytesRead === 0) throw new Error("unexpected end of file")
      done += bytesRead
    }
    return buffer
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

/** The small topics and the metadata records, in file order. */
const readIndex = async (reader: McapIndexedReader, topics: ReadonlyMap<number, string>) => {
  const observations: Array<ObservationEntry> = []
  const actions: Array<RecordedAction> = []
  for await (const m of reader.readMessages({ topics: ["/observation", "/action"] })) {
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
  for await (const r of reader.readMetadata()) records.push({ name: r.name, values: r.metadata })
  return { observations, actions, records }
}

/** Observation `entry` with its pixels: every message of its `seq` at its log time. */
const readObservation = async (reader: McapIndexedReader, topics: ReadonlyMap<number, string>, entry: ObservationEntry): Promise<Observation> => {
  const seq = entry.seq
  const parts = new Map<string, Uint8Array>()
  for await (const m of reader.readMessages({ startTime: entry.logTime, endTime: entry.logTime })) {
    if (m.sequence === seq) parts.set(topics.get(m.channelId)!, m.data)
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
 * the scope closes. Fails with a `RecordError` when it cannot be read or is
 * not a chiral episode (neither a `/observation` topic nor a `chiral.` record).
 */
export const open = (path: string): Effect.Effect<Episode, RecordError, Scope.Scope> =>
  Effect.gen(function*() {
    const failed = (reason: unknown) =>
      new RecordError({ path, reason: reason instanceof Error ? reason.message : String(reason) })
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => openFile(path, "r"), catch: failed }),
      (h) => Effect.promise(() => h.close())
    )
    const reader = yield* Effect.tryPromise({
      try: async () => {
        const { size } = await handle.stat()
        return McapIndexedReader.Initialize({ readable: readable(handle, BigInt(size)), decompressHandlers: await decompressHandlers() })
      },
      catch: failed
    })
    const topics = new Map(Array.from(reader.channelsById.values(), (c) => [c.id, c.topic]))
    const chiral = Array.from(topics.values()).includes("/observation") ||
      reader.metadataIndexes.some((m) => m.name.startsWith("chiral."))
    if (!chiral) return yield* Effect.fail(new RecordError({ path, reason: "no chiral topics or records: not a chiral episode" }))

    const { actions, observations, records } = yield* Effect.tryPromise({ try: () => readIndex(reader, topics), catch: failed })
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
          return readObservation(reader, topics, entry)
        },
        catch: failed
      })

    return { path, metadata, observations, actions, records, observation } satisfies Episode
  })
