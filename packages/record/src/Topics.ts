/**
 * How a chiral session maps onto Foxglove topics, shared by the MCAP episode
 * writer and the live view, so a recording and the live robot look the same.
 *
 * | topic | schema | encoding | from |
 * |---|---|---|---|
 * | `/<camera>/image` | `foxglove.RawImage` | protobuf | image: uint8 [H,W,3] `rgb8`, [H,W,4] `rgba8`, [H,W(,1)] `mono8`; uint16 `mono16`; float32 `32FC1` |
 * | `/<camera>/depth` | `foxglove.RawImage` | protobuf | depth: float32 metres `32FC1`, uint16 millimetres `16UC1` |
 * | `/<camera>/calibration` | `foxglove.CameraCalibration` | protobuf | K, width and height of the image; P = [K \| 0], R = I, no distortion |
 * | `/tf` | `foxglove.FrameTransform` | protobuf | T: `world` → `<camera>` (T is camera-to-world, i.e. the camera's pose in `world`) |
 * | `/proprio/<name>` | `chiral.Proprio` | json | `{timestamp, dtype, shape, values}` |
 * | `/action` | `chiral.Action` | json | `{type, connection, dtype, shape, values, obs_timestamps}` |
 * | `/observation` | `chiral.Observation` | json | per answer: reply type, timestamps, K and T exactly, shapes, info… |
 *
 * Foxglove message timestamps (`timestamp` fields, MCAP publish time) are the
 * robot's capture times: camera timestamps for camera topics, the
 * observation's timestamp for the others (seconds of the robot's monotonic
 * clock as {sec, nsec}). `/observation` keeps every float as sent (JSON
 * writes the shortest round-trip form), so a replay serves exactly the
 * recorded K, T and timestamps and an action's `obs_timestamps` can be matched
 * against it. Numbers in JSON channels follow `Json` (non-finite values as
 * strings).
 */
import type { ApplyAction, CameraFrame, LegacyAction, Observation, Tensor, UserMap } from "@chiral/protocol"
import { Tensor as Tensors } from "@chiral/protocol"
import * as Json from "./Json.js"
import * as Protobuf from "./Protobuf.js"

/** A channel's schema and encodings, as MCAP and the Foxglove WebSocket protocol both describe channels. */
export interface ChannelSpec {
  readonly topic: string
  /** `protobuf` or `json`. */
  readonly messageEncoding: "protobuf" | "json"
  readonly schemaName: string
  /** `protobuf` (FileDescriptorSet bytes) or `jsonschema` (UTF-8 JSON). */
  readonly schemaEncoding: "protobuf" | "jsonschema"
  readonly schema: Uint8Array
}

/** One message for one topic. */
export interface TopicMessage {
  readonly channel: ChannelSpec
  readonly data: Uint8Array
  /** The robot's capture time of what the message shows (ns). */
  readonly publishTime: bigint
}

/** A reply that carries an observation, with what came beside it. */
export interface ObservationReply {
  readonly reply: "reset_response" | "obs_response" | "step_response"
  readonly obs: Observation
  readonly info?: UserMap | undefined
  readonly reward?: number | undefined
  readonly terminated?: boolean | undefined
  readonly truncated?: boolean | undefined
}

// ── schemas ───────────────────────────────────────────────────────────────────

const utf8 = new TextEncoder()

const protobufChannel = (topic: string, name: "RawImage" | "CameraCalibration" | "FrameTransform"): ChannelSpec => {
  const schema = Protobuf.foxgloveSchema(name)
  return {
    topic,
    messageEncoding: "protobuf",
    schemaName: Protobuf.schemaName(schema),
    schemaEncoding: "protobuf",
    schema: descriptorCache.get(name) ?? cacheDescriptor(name)
  }
}
const descriptorCache = new Map<string, Uint8Array>()
const cacheDescriptor = (name: "RawImage" | "CameraCalibration" | "FrameTransform") => {
  const bytes = Protobuf.descriptorSet(Protobuf.foxgloveSchema(name))
  descriptorCache.set(name, bytes)
  return bytes
}

const jsonChannel = (topic: string, schemaName: string, schema: object): ChannelSpec => ({
  topic,
  messageEncoding: "json",
  schemaName,
  schemaEncoding: "jsonschema",
  schema: utf8.encode(JSON.stringify(schema))
})

const tensorFields = {
  dtype: { type: "string", description: "numpy dtype name as sent" },
  shape: { type: "array", items: { type: "integer" } },
  values: { type: "array", items: Json.numberSchema, description: "elements, row-major; non-finite as \"NaN\", \"Infinity\", \"-Infinity\"" }
}

const proprioSchema = {
  type: "object",
  title: "chiral.Proprio",
  properties: { timestamp: { type: "number", description: "observation timestamp (s, robot monotonic clock)" }, ...tensorFields }
}

const actionSchema = {
  type: "object",
  title: "chiral.Action",
  properties: {
    type: { type: "string", enum: ["apply_action", "action"] },
    connection: { type: "string" },
    ...tensorFields,
    obs_timestamps: {
      type: "object",
      additionalProperties: { type: "number" },
      description: "camera → capture timestamp (s) of the observation the action was computed from"
    }
  }
}

const observationSchema = {
  type: "object",
  title: "chiral.Observation",
  properties: {
    seq: { type: "integer", description: "observation number in the recording; MCAP sequence of its camera and proprio messages" },
    reply: { type: "string", enum: ["reset_response", "obs_response", "step_response"] },
    connection: { type: "string" },
    timestamp: { type: "number" },
    extra: { type: "object" },
    cameras: { type: "object" },
    proprios: { type: "array", items: { type: "string" } },
    info: { type: "object" },
    reward: Json.numberSchema,
    terminated: { type: "boolean" },
    truncated: { type: "boolean" }
  }
}

/** The channels, by topic. Specs are cached: a topic always maps to the same object. */
export const channels = (() => {
  const cache = new Map<string, ChannelSpec>()
  const get = (topic: string, make: () => ChannelSpec) => {
    let spec = cache.get(topic)
    if (spec === undefined) cache.set(topic, spec = make())
    return spec
  }
  return {
    image: (camera: string) => get(`/${camera}/image`, () => protobufChannel(`/${camera}/image`, "RawImage")),
    depth: (camera: string) => get(`/${camera}/depth`, () => protobufChannel(`/${camera}/depth`, "RawImage")),
    calibration: (camera: string) =>
      get(`/${camera}/calibration`, () => protobufChannel(`/${camera}/calibration`, "CameraCalibration")),
    tf: () => get("/tf", () => protobufChannel("/tf", "FrameTransform")),
    proprio: (name: string) => get(`/proprio/${name}`, () => jsonChannel(`/proprio/${name}`, "chiral.Proprio", proprioSchema)),
    action: () => get("/action", () => jsonChannel("/action", "chiral.Action", actionSchema)),
    observation: () => get("/observation", () => jsonChannel("/observation", "chiral.Observation", observationSchema))
  }
})()

// ── conversions ───────────────────────────────────────────────────────────────

/** Seconds (float) → {sec, nsec}; negative or non-finite times become 0. */
export const timeOf = (seconds: number): { readonly sec: number; readonly nsec: number } => {
  if (!(seconds > 0) || !Number.isFinite(seconds)) return { sec: 0, nsec: 0 }
  let sec = Math.floor(seconds)
  let nsec = Math.round((seconds - sec) * 1e9)
  if (nsec >= 1e9) (sec += 1, nsec -= 1e9)
  return { sec, nsec }
}

/** Seconds (float) → nanoseconds. */
export const nanosOf = (seconds: number): bigint => {
  const { nsec, sec } = timeOf(seconds)
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec)
}

/** The RawImage encoding of a tensor, or undefined when Foxglove has none for it. */
export const imageEncoding = (t: Tensor, kind: "image" | "depth"): { encoding: string; width: number; height: number; step: number } | undefined => {
  const [height, width, channels = 1, ...rest] = t.shape
  if (height === undefined || width === undefined || rest.length > 0) return undefined
  const encoding = t.dtype === "uint8"
    ? (kind === "image" ? ({ 1: "mono8", 3: "rgb8", 4: "rgba8" } as Record<number, string>)[channels] : undefined)
    : t.dtype === "uint16" && channels === 1
    ? (kind === "image" ? "mono16" : "16UC1")
    : t.dtype === "float32" && channels === 1
    ? "32FC1"
    : undefined
  if (encoding === undefined) return undefined
  return { encoding, width, height, step: width * channels * Tensors.itemSize(t.dtype) }
}

/** Rotation matrix (row-major 4×4 T) → unit quaternion {x, y, z, w}. */
export const quaternionOf = (t: ArrayLike<number>) => {
  const m00 = t[0]!, m01 = t[1]!, m02 = t[2]!, m10 = t[4]!, m11 = t[5]!, m12 = t[6]!, m20 = t[8]!, m21 = t[9]!, m22 = t[10]!
  const trace = m00 + m11 + m22
  let x: number, y: number, z: number, w: number
  if (trace > 0) {
    const s = Math.sqrt(trace + 1) * 2
    w = s / 4, x = (m21 - m12) / s, y = (m02 - m20) / s, z = (m10 - m01) / s
  } else if (m00 > m11 && m00 > m22) {
    const s = Math.sqrt(1 + m00 - m11 - m22) * 2
    w = (m21 - m12) / s, x = s / 4, y = (m01 + m10) / s, z = (m02 + m20) / s
  } else if (m11 > m22) {
    const s = Math.sqrt(1 + m11 - m00 - m22) * 2
    w = (m02 - m20) / s, x = (m01 + m10) / s, y = s / 4, z = (m12 + m21) / s
  } else {
    const s = Math.sqrt(1 + m22 - m00 - m11) * 2
    w = (m10 - m01) / s, x = (m02 + m20) / s, y = (m12 + m21) / s, z = s / 4
  }
  const n = Math.hypot(x, y, z, w) || 1
  return { x: x / n, y: y / n, z: z / n, w: w / n }
}

const tensorJson = (t: Tensor) => ({ dtype: t.dtype, shape: t.shape, values: Tensors.toArray(t) })

const rawImage = (camera: CameraFrame, t: Tensor, kind: "image" | "depth"): Uint8Array | undefined => {
  const layout = imageEncoding(t, kind)
  if (layout === undefined) return undefined
  return Protobuf.encode(Protobuf.foxgloveSchema("RawImage"), {
    timestamp: timeOf(camera.timestamp),
    frame_id: camera.name,
    ...layout,
    data: Tensors.bytes(t)
  })
}

const cameraMessages = (camera: CameraFrame, out: Array<TopicMessage>, skipped: Array<string>, withImages: boolean) => {
  const publishTime = nanosOf(camera.timestamp)
  const stamp = timeOf(camera.timestamp)
  if (withImages) {
    const image = rawImage(camera, camera.image, "image")
    if (image === undefined) skipped.push(`${camera.name} image ${camera.image.dtype}[${camera.image.shape.join(",")}]`)
    else out.push({ channel: channels.image(camera.name), data: image, publishTime })
    if (camera.depth !== null) {
      const depth = rawImage(camera, camera.depth, "depth")
      if (depth === undefined) skipped.push(`${camera.name} depth ${camera.depth.dtype}[${camera.depth.shape.join(",")}]`)
      else out.push({ channel: channels.depth(camera.name), data: depth, publishTime })
    }
  }
  const k = camera.intrinsics
  const [height = 0, width = 0] = camera.image.shape
  out.push({
    channel: channels.calibration(camera.name),
    data: Protobuf.encode(Protobuf.foxgloveSchema("CameraCalibration"), {
      timestamp: stamp,
      frame_id: camera.name,
      width,
      height,
      distortion_model: "",
      D: [],
      K: k,
      R: [1, 0, 0, 0, 1, 0, 0, 0, 1],
      P: [k[0]!, k[1]!, k[2]!, 0, k[3]!, k[4]!, k[5]!, 0, k[6]!, k[7]!, k[8]!, 0]
    }),
    publishTime
  })
  const t = camera.extrinsics
  out.push({
    channel: channels.tf(),
    data: Protobuf.encode(Protobuf.foxgloveSchema("FrameTransform"), {
      timestamp: stamp,
      parent_frame_id: "world",
      child_frame_id: camera.name,
      translation: { x: t[3]!, y: t[7]!, z: t[11]! },
      rotation: quaternionOf(t)
    }),
    publishTime
  })
}

/** The `/observation` record of one reply: everything needed to serve it again, bar the pixels. */
export const observationRecord = (reply: ObservationReply, seq: number, connection: string) => {
  const obs = reply.obs
  const cameras: Record<string, unknown> = {}
  for (const c of obs.cameras) {
    cameras[c.name] = {
      timestamp: c.timestamp,
      K: Array.from(c.intrinsics),
      T: Array.from(c.extrinsics),
      image: { dtype: c.image.dtype, shape: c.image.shape },
      depth: c.depth === null ? null : { dtype: c.depth.dtype, shape: c.depth.shape }
    }
  }
  return {
    seq,
    reply: reply.reply,
    connection,
    timestamp: obs.timestamp,
    extra: obs.extra,
    cameras,
    proprios: obs.proprios.map((p) => p.name),
    ...(reply.info === undefined ? {} : { info: reply.info }),
    ...(reply.reward === undefined ? {} : { reward: reply.reward }),
    ...(reply.terminated === undefined ? {} : { terminated: reply.terminated }),
    ...(reply.truncated === undefined ? {} : { truncated: reply.truncated })
  }
}

/**
 * Every topic message of one observation reply. `withImages: false` leaves out
 * the pixels (the view's topics a client has not subscribed to). Images whose
 * dtype/shape Foxglove cannot show are listed in `skipped`.
 */
export const observationMessages = (
  reply: ObservationReply,
  options: { readonly seq: number; readonly connection: string; readonly withImages?: boolean | undefined }
): { readonly messages: ReadonlyArray<TopicMessage>; readonly skipped: ReadonlyArray<string> } => {
  const messages: Array<TopicMessage> = []
  const skipped: Array<string> = []
  const obs = reply.obs
  for (const camera of obs.cameras) cameraMessages(camera, messages, skipped, options.withImages ?? true)
  const publishTime = nanosOf(obs.timestamp)
  for (const p of obs.proprios) {
    messages.push({
      channel: channels.proprio(p.name),
      data: Json.encode({ timestamp: obs.timestamp, ...tensorJson(p.data) }),
      publishTime
    })
  }
  messages.push({
    channel: channels.observation(),
    data: Json.encode(observationRecord(reply, options.seq, options.connection)),
    publishTime
  })
  return { messages, skipped }
}

/** The `/action` message of one action (fire-and-forget `apply_action` or a legacy `action` chunk). */
export const actionMessage = (message: ApplyAction | LegacyAction, connection: string, receivedNanos: bigint): TopicMessage => ({
  channel: channels.action(),
  data: Json.encode({
    type: message.type,
    connection,
    ...tensorJson(message.action),
    obs_timestamps: message.obsTimestamps
  }),
  // An action has no capture time of its own: it is stamped when it was received.
  publishTime: receivedNanos
})
