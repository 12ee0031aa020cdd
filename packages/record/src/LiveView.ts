/**
 * A live view of a chiral session in Foxglove or Lichtblick: a Foxglove
 * WebSocket server (`foxglove.websocket.v1`, `@foxglove/ws-protocol` over
 * `ws`) publishing the topics of `Topics` — images, depth, calibration, `/tf`,
 * proprios, `/observation` and, when fed actions, `/action`.
 *
 * It is fed either by a tap on a proxy's frames (`tap`, inside
 * `chiral record`) or by a client of its own (`publishReply`, `chiral view`).
 * Observations are shown at most `hz` times a second: the tap keeps only the
 * newest one (decoding a frame's header, no pixels touched) and a ticker
 * publishes it if it is new; actions are published as they come. Channels
 * are advertised as topics first appear. Pixels are encoded only while some
 * viewer subscribes to an image topic.
 *
 * A viewer that reads slowly gets messages dropped, never queued without
 * bound: when its socket has more than `maxBufferedBytes` waiting, whole
 * messages to it are skipped (counted in `stats`), and nothing upstream ever
 * waits for a viewer.
 *
 * What the view shows is what the robot's cameras see: by default it listens
 * on this machine only (127.0.0.1), and with a `token` a viewer must present
 * it as a chiral WebSocket server's clients do (`AccessToken`:
 * `ws://host:port/?token=T`, the form Foxglove and Lichtblick can open, or
 * `Authorization: Bearer T`), else it gets HTTP 401 before the upgrade.
 * Served on another interface without a token, it says so in a warning.
 */
import { decodeFrame, type Message } from "@chiral/protocol"
import { FoxgloveServer } from "@foxglove/ws-protocol"
import type { IWebSocket } from "@foxglove/ws-protocol"
import * as AccessToken from "@chiral/websocket/AccessToken"
import { isLoopbackHost } from "@chiral/websocket/WebSocketServer"
import { Effect, Result, Schedule, Schema, type Scope, SubscriptionRef } from "effect"
import { WebSocketServer } from "ws"
import type { WebSocket } from "ws"
import type { Direction, Frame } from "./Recorder.js"
import * as Topics from "./Topics.js"

/** The view could not be served (the port is taken, the token is empty…). */
export class ViewError extends Schema.TaggedError<ViewError>()("ViewError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.address}: ${this.reason}`
  }
}

export interface LiveViewOptions {
  /**
   * Interface to listen on. Default `127.0.0.1`: the view shows the robot's
   * cameras, so it reaches beyond this machine only when asked to (`0.0.0.0`).
   */
  readonly host?: string | undefined
  /**
   * Access token viewers must present (`ws://host:port/?token=T` or
   * `Authorization: Bearer T`); others get HTTP 401 before the upgrade (see
   * `AccessToken`). Default: none, anyone who reaches the port watches
   * (logged as a warning when the host is not a loopback address).
   */
  readonly token?: string | undefined
  /** Port; 0 picks a free one (see `address`). Default 8767. */
  readonly port?: number | undefined
  /** Observations published per second at most. Default 10. */
  readonly hz?: number | undefined
  /** Publish the actions a tap sees on `/action`. Default true. */
  readonly withActions?: boolean | undefined
  /** Bytes waiting on a viewer's socket beyond which messages to it are dropped. Default 64 MiB. */
  readonly maxBufferedBytes?: number | undefined
  /** The server name viewers show. Default `chiral`. */
  readonly name?: string | undefined
}

export interface LiveViewStats {
  readonly viewers: number
  /** Observations published (each to the viewers subscribed to its topics). */
  readonly published: number
  /** Messages skipped for viewers that were behind. */
  readonly dropped: number
}

export interface LiveView {
  /** `ws://host:port` viewers connect to (adding `/?token=T` when a token is set). */
  readonly address: string
  /** Feeds the view from a proxy's frames (never waits). */
  readonly tap: (direction: Direction, connection: string, frame: Frame, receivedAt: number) => void
  /** Feeds the view one observation reply (received at `receivedAt`, ms since the Unix epoch); shown at the next tick. */
  readonly publishReply: (reply: Topics.ObservationReply, connection: string, receivedAt: number) => void
  /**
   * Viewers connected now (those let in: a token refused is not one). A
   * feeder that has to ask for what it shows (`chiral view`) asks only while
   * this is above 0; nobody else waits on a view.
   */
  readonly viewers: SubscriptionRef.SubscriptionRef<number>
  readonly stats: () => LiveViewStats
}

const joined = (frame: Frame): Uint8Array => {
  if (frame instanceof Uint8Array) return frame
  if (frame.length === 1) return frame[0]!
  const out = new Uint8Array(frame.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const part of frame) (out.set(part, offset), offset += part.byteLength)
  return out
}

/** A ws socket for FoxgloveServer whose binary messages are skipped while the socket is behind (exported for tests). */
export const droppingSocket = (ws: WebSocket, maxBuffered: number, onDrop: () => void): IWebSocket => {
  // Message data goes out as two fragments (header fin:false, payload fin:true):
  // both follow the decision taken on the first.
  let skipping = false
  let inMessage = false
  const socket: IWebSocket = {
    get binaryType() {
      return ws.binaryType
    },
    set binaryType(value: string) {
      ws.binaryType = value as WebSocket["binaryType"]
    },
    get protocol() {
      return ws.protocol
    },
    get onerror() {
      return ws.onerror as IWebSocket["onerror"]
    },
    set onerror(f) {
      ws.onerror = f ?? null
    },
    get onopen() {
      return ws.onopen as IWebSocket["onopen"]
    },
    set onopen(f) {
      ws.onopen = f ?? null
    },
    get onclose() {
      return ws.onclose as IWebSocket["onclose"]
    },
    set onclose(f) {
      ws.onclose = f ?? null
    },
    get onmessage() {
      return ws.onmessage as IWebSocket["onmessage"]
    },
    set onmessage(f) {
      ws.onmessage = f ?? null
    },
    close: () => ws.close(),
    send: (data: string | ArrayBuffer | ArrayBufferView, options?: { fin?: boolean }) => {
      if (typeof data === "string") return ws.send(data)
      if (!inMessage) {
        skipping = ws.bufferedAmount > maxBuffered
        if (skipping) onDrop()
      }
      inMessage = options?.fin === false
      if (!skipping && ws.readyState === ws.OPEN) ws.send(data, { binary: true, fin: options?.fin ?? true })
    }
  }
  return socket
}

/**
 * The Foxglove server on a `ws` server, viewers checked for the token and
 * wrapped by `droppingSocket`; closed with the scope.
 */
const listen = (options: LiveViewOptions, foxglove: FoxgloveServer, onDrop: () => void) =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 8767
    const maxBuffered = options.maxBufferedBytes ?? 64 * 1024 * 1024
    const wanted = `ws://${host.includes(":") ? `[${host}]` : host}:${port}`
    if (options.token === "") return yield* new ViewError({ address: wanted, reason: "the token is empty" })
    const context = yield* Effect.context<never>()
    const log = (effect: Effect.Effect<void>) => void Effect.runForkWith(context)(effect)
    const refusal = options.token === undefined ? undefined : AccessToken.checker(options.token)
    const wss = yield* Effect.acquireRelease(
      Effect.callback<WebSocketServer, ViewError>((resume) => {
        const wss = new WebSocketServer({
          host,
          port,
          perMessageDeflate: false,
          handleProtocols: (protocols) => foxglove.handleProtocols(protocols),
          ...(refusal === undefined
            ? {}
            : { verifyClient: AccessToken.verifyClient(refusal, "a viewer", (line) => log(Effect.logWarning(line))) })
        })
        wss.once("listening", () => resume(Effect.succeed(wss)))
        wss.once("error", (error) => resume(Effect.fail(new ViewError({ address: wanted, reason: error.message }))))
      }),
      (wss) =>
        Effect.callback<void>((resume) => {
          for (const client of wss.clients) client.terminate()
          wss.close(() => resume(Effect.void))
        })
    )
    const bound = wss.address()
    const address = typeof bound === "string" || bound === null
      ? wanted
      : `ws://${host.includes(":") ? `[${host}]` : host}:${bound.port}`
    if (options.token === undefined && !isLoopbackHost(host)) {
      yield* Effect.logWarning(
        `chiral: serving the live view ${address} without a token: anyone who can reach this port can watch the robot's cameras (set a token: LiveViewOptions.token, or a chiral command's --token or CHIRAL_TOKEN)`
      )
    }
    const viewers = yield* SubscriptionRef.make(0)
    const count = (change: number) => Effect.runSyncWith(context)(SubscriptionRef.update(viewers, (n) => n + change))
    wss.on("connection", (ws, request) => {
      count(1)
      ws.once("close", () => count(-1))
      foxglove.handleConnection(droppingSocket(ws, maxBuffered, onDrop), AccessToken.peerOf(request))
    })
    return { address, viewers }
  })

/**
 * Channels advertised as their topics first appear, and which of them some
 * viewer subscribes to; `send` publishes to the subscribed ones only.
 */
const channelRegistry = (foxglove: FoxgloveServer) => {
  const channelIds = new Map<Topics.ChannelSpec, number>()
  const subscribed = new Set<number>()
  const imageChannels = new Set<number>()
  foxglove.on("subscribe", (id) => subscribed.add(id))
  foxglove.on("unsubscribe", (id) => subscribed.delete(id))
  foxglove.on("error", () => undefined)
  const channelOf = (spec: Topics.ChannelSpec): number => {
    let id = channelIds.get(spec)
    if (id === undefined) {
      id = foxglove.addChannel({
        topic: spec.topic,
        encoding: spec.messageEncoding,
        schemaName: spec.schemaName,
        schemaEncoding: spec.schemaEncoding,
        schema: spec.schemaEncoding === "protobuf"
          ? Buffer.from(spec.schema).toString("base64")
          : new TextDecoder().decode(spec.schema)
      })
      channelIds.set(spec, id)
      if (spec.schemaName === "foxglove.RawImage") imageChannels.add(id)
    }
    return id
  }
  return {
    advertise: channelOf,
    /** Pixels are wanted by someone (or the image topics are not known yet). */
    imagesWanted: () => imageChannels.size === 0 || Array.from(imageChannels).some((id) => subscribed.has(id)),
    send: (messages: ReadonlyArray<Topics.TopicMessage>, logTime: bigint) => {
      for (const m of messages) {
        const id = channelOf(m.channel)
        if (subscribed.has(id)) foxglove.sendMessage(id, logTime, m.data)
      }
    }
  }
}

/** Starts a view; it stops, with its viewers disconnected, when the scope closes. */
export const make = (options: LiveViewOptions = {}): Effect.Effect<LiveView, ViewError, Scope.Scope> =>
  Effect.gen(function*() {
    const hz = options.hz ?? 10
    const foxglove = new FoxgloveServer({ name: options.name ?? "chiral", supportedEncodings: ["protobuf", "json"] })
    let published = 0
    let dropped = 0
    const server = yield* listen(options, foxglove, () => dropped++)
    const channels = channelRegistry(foxglove)
    const send = channels.send
    const withActions = options.withActions ?? true
    // Advertised up front, so a viewer can subscribe before the first action passes.
    if (withActions) channels.advertise(Topics.channels.action())

    let latest: { reply: Topics.ObservationReply; connection: string; receivedAt: number } | undefined
    let seq = 0
    const publishLatest = Effect.sync(() => {
      if (latest === undefined) return
      const { connection, receivedAt, reply } = latest
      latest = undefined
      // Pixels only for someone who looks at them.
      const { messages } = Topics.observationMessages(reply, { seq: ++seq, connection, withImages: channels.imagesWanted() })
      send(messages, BigInt(Math.round(receivedAt * 1e6)))
      published++
    })
    yield* Effect.forkScoped(Effect.repeat(publishLatest, Schedule.spaced(1000 / hz)))

    const publishReply = (reply: Topics.ObservationReply, connection: string, receivedAt: number) => {
      latest = { reply, connection, receivedAt }
    }
    const onMessage = (message: Message, connection: string, receivedAt: number) => {
      switch (message.type) {
        case "obs_response":
        case "reset_response":
          return publishReply({ reply: message.type, obs: message.obs }, connection, receivedAt)
        case "step_response":
          return publishReply({ reply: message.type, obs: message.obs, reward: message.reward }, connection, receivedAt)
        case "apply_action":
        case "action": {
          if (!withActions) return
          const logTime = BigInt(Math.round(receivedAt * 1e6))
          return send([Topics.actionMessage(message, connection, logTime)], logTime)
        }
      }
    }
    const tap = (_direction: Direction, connection: string, frame: Frame, receivedAt: number) => {
      // Read per frame: the ref's value as it is, not an effect.
      if (SubscriptionRef.getUnsafe(server.viewers) === 0) return
      const decoded = decodeFrame(joined(frame))
      if (Result.isSuccess(decoded)) onMessage(decoded.success, connection, receivedAt)
    }

    return {
      address: server.address,
      tap,
      publishReply,
      viewers: server.viewers,
      stats: () => ({ viewers: SubscriptionRef.getUnsafe(server.viewers), published, dropped })
    } satisfies LiveView
  })
