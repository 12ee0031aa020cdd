// A deliberately minimal WebSocket client on a bare TCP socket, for what a
// well-behaved client never does: stop mid-frame, never read, never answer a
// ping, send text, or present no token.
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Effect } from "effect"

export interface RawWebSocket {
  readonly socket: Net.Socket
  /**
   * Writes one client frame (masked). `declaredLength` lets a test lie about
   * the size; `opcode` defaults to binary (2); 1 is text.
   */
  readonly sendFrame: (payload: Uint8Array, options?: { readonly declaredLength?: number; readonly opcode?: number }) => void
  /**
   * Starts reading what the server sends and answering its pings with pongs,
   * as any live client does (after `delayMillis`, default at once). Returns
   * the number of pings received so far.
   */
  readonly answerPings: (options?: { readonly delayMillis?: number }) => () => number
}

export interface HandshakeOptions {
  /** Request target, path and query. Default `/`. */
  readonly path?: string | undefined
  /** Extra request header lines, e.g. `{ Authorization: "Bearer T" }`. */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

const frameHeader = (length: number, opcode: number): Uint8Array => {
  // FIN + opcode; MASK bit set as clients must
  const first = 0x80 | opcode
  if (length < 126) return Uint8Array.of(first, 0x80 | length)
  if (length < 65536) return Uint8Array.of(first, 0x80 | 126, length >> 8, length & 0xff)
  const header = new Uint8Array(10)
  header[0] = first
  header[1] = 0x80 | 127
  new DataView(header.buffer).setBigUint64(2, BigInt(length))
  return header
}

const maskedFrame = (payload: Uint8Array, opcode: number, declaredLength = payload.byteLength): Buffer => {
  const mask = Crypto.randomBytes(4)
  const masked = Buffer.alloc(payload.byteLength)
  for (let i = 0; i < payload.byteLength; i++) masked[i] = payload[i]! ^ mask[i & 3]!
  return Buffer.concat([frameHeader(declaredLength, opcode), mask, masked])
}

/** Opens a TCP connection and sends the upgrade request; resolves with the response head and the socket. */
const upgrade = (address: string, options: HandshakeOptions = {}) =>
  Effect.callback<{ readonly socket: Net.Socket; readonly head: string; readonly rest: Buffer }, Error>((resume) => {
    const url = new URL(address)
    const socket = Net.connect({ host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(url.port) })
    const key = Crypto.randomBytes(16).toString("base64")
    socket.once("error", (error) => resume(Effect.fail(error)))
    socket.once("connect", () => {
      const extra = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("")
      socket.write(
        `GET ${options.path ?? "/"} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
      )
    })
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf("\r\n\r\n")
      if (end < 0) return
      socket.off("data", onData)
      // stop reading: anything the server sends now piles up in the kernel buffers
      socket.pause()
      resume(Effect.succeed({ socket, head: head.subarray(0, end).toString("latin1"), rest: head.subarray(end + 4) }))
    }
    socket.on("data", onData)
  })

/** The HTTP status code the server answers an upgrade request with (101 when it accepts); the socket is closed. */
export const upgradeStatus = (address: string, options?: HandshakeOptions) =>
  Effect.acquireUseRelease(
    upgrade(address, options),
    ({ head }) => Effect.succeed(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)),
    ({ socket }) => Effect.sync(() => socket.destroy())
  )

/** Parses the server's (unmasked) frames from `buffer`; returns the bytes of an unfinished frame. */
const serverFrames = (buffer: Buffer, onFrame: (opcode: number, payload: Buffer) => void): Buffer => {
  let at = 0
  while (buffer.length - at >= 2) {
    const opcode = buffer[at]! & 0x0f
    let length = buffer[at + 1]! & 0x7f
    let start = at + 2
    if (length === 126) {
      if (buffer.length - at < 4) break
      length = buffer.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      if (buffer.length - at < 10) break
      length = Number(buffer.readBigUInt64BE(at + 2))
      start = at + 10
    }
    if (buffer.length < start + length) break
    onFrame(opcode, buffer.subarray(start, start + length))
    at = start + length
  }
  return buffer.subarray(at)
}

/** Opens a raw WebSocket to ws://host:port (handshake done, 101 expected); destroyed with the scope. */
export const connect = (address: string, options?: HandshakeOptions) =>
  Effect.acquireRelease(
    Effect.flatMap(upgrade(address, options), ({ head, rest, socket }) => {
      if (!head.startsWith("HTTP/1.1 101")) {
        socket.destroy()
        return Effect.fail(new Error(head))
      }
      const raw: RawWebSocket = {
        socket,
        sendFrame: (payload, frameOptions) =>
          void socket.write(maskedFrame(payload, frameOptions?.opcode ?? 2, frameOptions?.declaredLength)),
        answerPings: (pingOptions) => {
          let pings = 0
          let pending = rest
          socket.on("data", (chunk: Buffer) => {
            pending = serverFrames(Buffer.concat([pending, chunk]), (opcode, payload) => {
              if (opcode !== 0x9) return
              pings++
              const pong = maskedFrame(payload, 0xa)
              const delay = pingOptions?.delayMillis ?? 0
              if (delay > 0) setTimeout(() => socket.destroyed || socket.write(pong), delay)
              else socket.write(pong)
            })
          })
          socket.resume()
          return () => pings
        }
      }
      return Effect.succeed(raw)
    }),
    (raw) => Effect.sync(() => raw.socket.destroy())
  )

/** Resolves when the server has closed (or cut) `raw`'s connection. */
export const closedByServer = (raw: RawWebSocket) =>
  Effect.callback<void>((resume) => {
    if (raw.socket.destroyed || raw.socket.readableEnded) return resume(Effect.void)
    // read (and discard) whatever is pending, so the end of the stream is seen
    raw.socket.on("data", () => {})
    raw.socket.resume()
    const done = () => resume(Effect.void)
    raw.socket.once("close", done)
    raw.socket.once("end", done)
    return Effect.sync(() => {
      raw.socket.off("close", done)
      raw.socket.off("end", done)
    })
  })
