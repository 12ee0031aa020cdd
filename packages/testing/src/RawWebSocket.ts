// A deliberately minimal WebSocket client on a bare TCP socket, for what a
// well-behaved client never does: stop mid-frame, or never read.
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Effect } from "effect"

export interface RawWebSocket {
  readonly socket: Net.Socket
  /** Writes one client frame (masked); `declaredLength` lets a test lie about the size. */
  readonly sendFrame: (payload: Uint8Array, options?: { readonly declaredLength?: number }) => void
}

const frameHeader = (length: number): Uint8Array => {
  // FIN + binary opcode; MASK bit set as clients must
  if (length < 126) return Uint8Array.of(0x82, 0x80 | length)
  if (length < 65536) return Uint8Array.of(0x82, 0x80 | 126, length >> 8, length & 0xff)
  const header = new Uint8Array(10)
  header[0] = 0x82
  header[1] = 0x80 | 127
  new DataView(header.buffer).setBigUint64(2, BigInt(length))
  return header
}

/** Opens a raw WebSocket to ws://host:port (handshake done); destroyed with the scope. */
export const connect = (address: string) =>
  Effect.acquireRelease(
    Effect.callback<RawWebSocket, Error>((resume) => {
      const url = new URL(address)
      const socket = Net.connect({ host: url.hostname, port: Number(url.port) })
      const key = Crypto.randomBytes(16).toString("base64")
      socket.once("error", (error) => resume(Effect.fail(error)))
      socket.once("connect", () => {
        socket.write(
          `GET / HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
        )
      })
      let head = ""
      const onData = (chunk: Buffer) => {
        head += chunk.toString("latin1")
        if (!head.includes("\r\n\r\n")) return
        socket.off("data", onData)
        // stop reading: anything the server sends now piles up in the kernel buffers
        socket.pause()
        if (!head.startsWith("HTTP/1.1 101")) return resume(Effect.fail(new Error(head)))
        resume(Effect.succeed({
          socket,
          sendFrame: (payload, options) => {
            const mask = Crypto.randomBytes(4)
            const masked = Buffer.alloc(payload.byteLength)
            for (let i = 0; i < payload.byteLength; i++) masked[i] = payload[i]! ^ mask[i & 3]!
            socket.write(frameHeader(options?.declaredLength ?? payload.byteLength))
            socket.write(mask)
            socket.write(masked)
          }
        }))
      }
      socket.on("data", onData)
    }),
    (raw) => Effect.sync(() => raw.socket.destroy())
  )
