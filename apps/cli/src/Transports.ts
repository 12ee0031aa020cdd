/**
 * The transports the commands choose from (`--protocol`), as Layers: adding a
 * protocol is one entry in each table below.
 */
import { type ClientTransport, type ServerTransport, type TransportError } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { ZenohTransport } from "@chiral/zenoh-transport"
import type { Layer } from "effect"

export const protocols = ["websocket", "zenoh"] as const
export type Protocol = typeof protocols[number]

export interface Endpoint {
  readonly host: string
  /** Undefined: the protocol's default port (8765 WebSocket, 7447 Zenoh). */
  readonly port: number | undefined
  /** Zenoh only: keys `<prefix>/chiral/c2s`, `<prefix>/chiral/s2c` instead of the references' fixed keys. */
  readonly keyPrefix?: string | undefined
  /** WebSocket servers only: keepalive and access token (see `WebSocketTransport.ServerOptions`). */
  readonly webSocket?: Pick<WebSocketTransport.ServerOptions, "pingInterval" | "pingTimeout" | "token"> | undefined
  /**
   * Largest message a client may send (WebSocket `maxMessageBytes`, Zenoh's
   * reassembly cap). Default 16 MiB on both: clients send only requests and
   * actions.
   */
  readonly maxMessageBytes?: number | undefined
}

export const defaultPorts: Record<Protocol, number> = {
  websocket: WebSocketTransport.defaultPort,
  zenoh: ZenohTransport.defaultPort
}

export const serverTransports: Record<Protocol, (endpoint: Endpoint) => Layer.Layer<ServerTransport, TransportError>> = {
  websocket: ({ host, maxMessageBytes, port, webSocket }) =>
    WebSocketTransport.layerServer({ ...webSocket, host, port: port ?? defaultPorts.websocket, maxMessageBytes }),
  zenoh: ({ host, keyPrefix, maxMessageBytes, port }) =>
    ZenohTransport.layerServer({ host, port: port ?? defaultPorts.zenoh, keyPrefix, maxMessageSize: maxMessageBytes })
}

/** The protocol a URI names: `ws://host:port` WebSocket, `tcp/host:port` Zenoh. */
export const protocolOf = (uri: string): Protocol | undefined =>
  /^wss?:\/\//i.test(uri) ? "websocket" : /^tcp\//i.test(uri) ? "zenoh" : undefined

/**
 * The protocol of a command that may be given a URI: the URI's form says it,
 * and `flag` (`--protocol`), when also given, must agree; without a URI,
 * `flag`, else WebSocket. Or why not, as one line.
 */
export const protocolFor = (uri: string | undefined, flag: Protocol | undefined): Protocol | string => {
  if (uri === undefined) return flag ?? "websocket"
  const protocol = protocolOf(uri)
  if (protocol === undefined) {
    return `unsupported address ${JSON.stringify(uri)}: expected ws://host:port (WebSocket) or tcp/host:port (Zenoh)`
  }
  if (flag !== undefined && flag !== protocol) {
    return `--protocol ${flag} does not match ${JSON.stringify(uri)}: ${
      flag === "zenoh" ? "Zenoh addresses look like tcp/host:7447" : "WebSocket addresses look like ws://host:8765"
    }`
  }
  return protocol
}

/**
 * The client transport for `uri`, or why it cannot be used. `protocol`, when
 * given, must agree with the URI's form. `dispatchThread: "main"` keeps a
 * connection's action dispatcher on this thread (no worker thread): for
 * connections that only forward frames (`chiral record`'s upstream).
 */
export const clientTransportFor = (
  uri: string,
  options: {
    readonly protocol?: Protocol | undefined
    readonly keyPrefix?: string | undefined
    readonly dispatchThread?: "worker" | "main" | undefined
    /** Zenoh only: where the session runs (see `ZenohTransport.ClientOptions.sessionThread`). */
    readonly sessionThread?: "worker" | "main" | undefined
    /** Zenoh only: the largest message the client reassembles (default 1 GiB, as Rust Zenoh). */
    readonly maxMessageBytes?: number | undefined
  } = {}
): Layer.Layer<ClientTransport> | string => {
  const protocol = protocolFor(uri, options.protocol)
  if (protocol !== "websocket" && protocol !== "zenoh") return protocol
  if (protocol === "websocket") {
    if (options.keyPrefix !== undefined) return "--key-prefix applies to Zenoh only"
    if (options.maxMessageBytes !== undefined) {
      return "--max-message-size applies to Zenoh clients only (a WebSocket client takes messages of any size)"
    }
    return WebSocketTransport.layerClient(uri, { thread: options.dispatchThread })
  }
  return ZenohTransport.layerClient(uri, {
    keyPrefix: options.keyPrefix,
    thread: options.dispatchThread,
    sessionThread: options.sessionThread,
    maxMessageSize: options.maxMessageBytes
  })
}

/** The `token` in a WebSocket URI's query, if any (`ws://robot:8765/?token=T`). */
export const uriTokenOf = (uri: string): string | undefined => {
  if (protocolOf(uri) !== "websocket") return undefined
  try {
    const token = new URL(uri).searchParams.get("token")
    return token === null || token === "" ? undefined : token
  } catch {
    return undefined
  }
}

/**
 * A WebSocket URI presenting `token` (`ws://robot:8765/?token=T`) unless it
 * presents one already; other URIs as they are (Zenoh has no token), and one
 * that does not parse too, for the transport to say what is wrong with it.
 */
export const withToken = (uri: string, token: string | undefined): string => {
  if (token === undefined || protocolOf(uri) !== "websocket" || uriTokenOf(uri) !== undefined) return uri
  try {
    const url = new URL(uri)
    url.searchParams.set("token", token)
    return url.toString()
  } catch {
    return uri
  }
}

/** A URI as the commands print it: a `token` in its query shown as `***`. */
export const shown = (uri: string): string => WebSocketTransport.redactToken(uri)
