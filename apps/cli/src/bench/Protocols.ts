/**
 * The transports a benchmark can run over, by `--protocol` name. Each entry
 * gives the server layer, the client layer and the address clients use, so a
 * new transport (Zenoh) is one entry here.
 */
import { type ClientTransport, type ServerTransport, type TransportError } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { ZenohTransport } from "@chiral/zenoh-transport"
import { serverTransports } from "../Transports.js"
import type { Layer } from "effect"

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface ClientOptions {
  /** Where the client's action dispatcher runs: a worker thread (default) or the main one. */
  readonly thread?: "worker" | "main" | undefined
  /** Zenoh only: the largest message the client reassembles (default 1 GiB). */
  readonly maxMessageBytes?: number | undefined
  /** Where large messages are received: a fresh buffer each (default), or recycled memory. */
  readonly receiveBuffers?: "fresh" | "recycled" | undefined
}

export interface ProtocolEntry {
  readonly server: (endpoint: Endpoint) => Layer.Layer<ServerTransport, TransportError>
  readonly client: (address: string, options: ClientOptions) => Layer.Layer<ClientTransport>
  /** The address a client on this machine uses for a server listening on `endpoint`. */
  readonly address: (endpoint: Endpoint) => string
  /** The port the server actually listens on, read from its `ServerTransport.address`. */
  readonly portOf: (serverAddress: string) => number | undefined
}

const trailingPort = (address: string): number | undefined => {
  const match = /:(\d+)\/?$/.exec(address)
  return match === null ? undefined : Number(match[1])
}

export const protocols = {
  websocket: {
    server: serverTransports.websocket,
    client: (address, { receiveBuffers, thread }) => WebSocketTransport.layerClient(address, { thread, receiveBuffers }),
    address: ({ host, port }) => `ws://${host.includes(":") ? `[${host}]` : host}:${port}`,
    portOf: trailingPort
  },
  zenoh: {
    server: serverTransports.zenoh,
    client: (address, { maxMessageBytes, receiveBuffers, thread }) =>
      ZenohTransport.layerClient(address, { thread, maxMessageSize: maxMessageBytes, receiveBuffers }),
    address: ({ host, port }) => ZenohTransport.formatLocator(host, port),
    portOf: trailingPort
  }
} as const satisfies Record<string, ProtocolEntry>

export type Protocol = keyof typeof protocols

export const protocolNames = Object.keys(protocols) as ReadonlyArray<Protocol>

export const isProtocol = (name: string): name is Protocol => Object.hasOwn(protocols, name)
