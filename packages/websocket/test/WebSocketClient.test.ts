// The ws:// client framing (WebSocketClient) against a hand-written server on a
// bare TCP socket: handshake checks, messages cut at every possible place,
// placement of chiral payloads on 8-byte boundaries, control frames, closing,
// and protocol violations.
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { CameraFrame, decodeFrame, encodeFrame, lending, ReceivePool, Tensor } from "@chiral/protocol"
import { collectUntil } from "@chiral/testing/Collector"
import * as SilentServer from "@chiral/testing/SilentServer"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import type { TransportError } from "@chiral/core"
import * as WebSocketClient from "../src/WebSocketClient.js"
import * as WebSocketTransport from "../src/WebSocketTransport.js"

const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

interface Peer {
  readonly socket: Net.Socket
  /** Frames the client sent, unmasked: [opcode, payload, wasMasked]. */
  readonly frames: Array<readonly [number, Uint8Array, boolean]>
  /** Resolves once `count` frames from the client have arrived. */
  readonly frameCount: (count: number) => Promise<void>
}

type Answer = (key: string) => string

const acceptOf = (key: string) => Crypto.createHash("sha1").update(key + guid).digest("base64")
const goodAnswer: Answer = (key) =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${
    acceptOf(key)
  }\r\n\r\n`

/** A server frame (unmasked unless asked). */
const frame = (opcode: number, payload: Uint8Array, options: { fin?: boolean; mask?: boolean; rsv?: number } = {}) => {
  const fin = options.fin ?? true
  const n = payload.byteLength
  const head = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 0xff] : [127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
  const first = (fin ? 0x80 : 0) | (options.rsv ?? 0) | opcode
  const maskBit = options.mask === true ? 0x80 : 0
  const out = [first, head[0]! | maskBit, ...head.slice(1)]
  if (options.mask === true) {
    const key = [1, 2, 3, 4]
    return Uint8Array.from([...out, ...key, ...payload.map((b, i) => b ^ key[i & 3]!)])
  }
  return Uint8Array.from([...out, ...payload])
}

/** Parses client frames (masked) out of a byte stream. */
const clientFrameReader = (onFrame: (opcode: number, payload: Uint8Array, masked: boolean) => void) => {
  let pending = Buffer.alloc(0)
  return (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    for (;;) {
      if (pending.length < 2) return
      const masked = (pending[1]! & 0x80) !== 0
      let length = pending[1]! & 0x7f
      let at = 2
      if (length === 126) {
        if (pending.length < 4) return
        length = pending.readUInt16BE(2)
        at = 4
      } else if (length === 127) {
        if (pending.length < 10) return
        length = Number(pending.readBigUInt64BE(2))
        at = 10
      }
      const maskAt = at
      if (masked) at += 4
      if (pending.length < at + length) return
      const payload = Uint8Array.from(pending.subarray(at, at + length))
      if (masked) for (let i = 0; i < length; i++) payload[i]! ^= pending[maskAt + (i & 3)]!
      onFrame(pending[0]! & 0x0f, payload, masked)
      pending = pending.subarray(at + length)
    }
  }
}

/** A one-connection server: answers the handshake with `answer`, then runs `script`. */
const serve = (answer: Answer, script: (peer: Peer) => void | Promise<void>) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        let head = ""
        const frames: Array<readonly [number, Uint8Array, boolean]> = []
        const waiters: Array<[number, () => void]> = []
        const read = clientFrameReader((opcode, payload, masked) => {
          frames.push([opcode, payload, masked])
          for (const [count, done] of waiters) if (frames.length >= count) done()
        })
        const onData = (chunk: Buffer) => {
          if (head.includes("\r\n\r\n")) return read(chunk)
          head += chunk.toString("latin1")
          const end = head.indexOf("\r\n\r\n")
          if (end < 0) return
          const key = /Sec-WebSocket-Key: (\S+)/i.exec(head)![1]!
          socket.write(answer(key))
          const peer: Peer = {
            socket,
            frames,
            frameCount: (count) => new Promise((done) => frames.length >= count ? done() : waiters.push([count, done]))
          }
          void script(peer)
        }
        socket.on("data", onData)
        socket.on("error", () => {})
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.close())
  )

interface Outcome {
  readonly opened: boolean
  readonly messages: Array<Uint8Array>
  readonly closed: { code: number; reason: string; error: WebSocketClient.ClientSocketError | undefined } | undefined
}

/** Connects a client and collects what happens until it closes or `until` says stop. */
const runClient = (
  server: Net.Server,
  until: (outcome: Outcome) => boolean,
  onOpen?: (client: WebSocketClient.ClientSocket) => void
) =>
  Effect.callback<Outcome>((resume) => {
    const outcome: { opened: boolean; messages: Array<Uint8Array>; closed: Outcome["closed"] } = {
      opened: false,
      messages: [],
      closed: undefined
    }
    const check = () => {
      if (outcome.closed !== undefined || until(outcome)) resume(Effect.succeed(outcome))
    }
    const client: WebSocketClient.ClientSocket = WebSocketClient.connect({
      host: "127.0.0.1",
      port: (server.address() as Net.AddressInfo).port,
      path: "/",
      hostHeader: "127.0.0.1",
      openTimeoutMillis: 10_000
    }, {
      onOpen: () => {
        outcome.opened = true
        onOpen?.(client)
        check()
      },
      onMessage: (message) => {
        outcome.messages.push(message)
        check()
      },
      onClose: (code, reason, error) => {
        outcome.closed = { code, reason, error }
        check()
      }
    })
    return Effect.sync(() => client.destroy())
  })

/** A chiral-like message: u32 header_len, header bytes, then a payload. */
const chiralMessage = (headerLen: number, payloadLen: number) => {
  const m = new Uint8Array(4 + headerLen + payloadLen)
  new DataView(m.buffer).setUint32(0, headerLen, true)
  for (let i = 4; i < m.length; i++) m[i] = (i * 7) & 0xff
  return m
}

/** Writes `bytes` in pieces of the given sizes (cycled), one write per piece. */
const writeInPieces = async (socket: Net.Socket, bytes: Uint8Array, sizes: ReadonlyArray<number>) => {
  let at = 0
  for (let k = 0; at < bytes.length; k++) {
    const n = sizes[k % sizes.length]!
    socket.write(bytes.subarray(at, at + n))
    at += n
    await new Promise((r) => setTimeout(r, 0))
  }
}

describe("WebSocketClient", () => {
  it.live("a chiral frame split into fragments and cut at every byte arrives whole, its payload 8-byte aligned", () =>
    Effect.gen(function*() {
      const messages = [chiralMessage(5, 40), chiralMessage(300, 5000), chiralMessage(2, 70_000)]
      const server = yield* serve(goodAnswer, async ({ socket }) => {
        for (const m of messages) {
          // header part, then the payload in two fragments, as the TS server sends parts
          const cut1 = 4 + new DataView(m.buffer).getUint32(0, true)
          const cut2 = cut1 + Math.floor((m.length - cut1) / 2)
          const wire = Uint8Array.from([
            ...frame(0x2, m.subarray(0, cut1), { fin: false }),
            ...frame(0x0, m.subarray(cut1, cut2), { fin: false }),
            ...frame(0x0, m.subarray(cut2), { fin: true })
          ])
          await writeInPieces(socket, wire, [1, 2, 3, 5, 7, 11, 4096])
        }
      })
      const outcome = yield* runClient(server, (o) => o.messages.length === messages.length)
      assert.isUndefined(outcome.closed)
      outcome.messages.forEach((got, i) => {
        assert.deepStrictEqual(Array.from(got), Array.from(messages[i]!))
        const headerLen = new DataView(got.buffer, got.byteOffset).getUint32(0, true)
        assert.strictEqual((got.byteOffset + 4 + headerLen) % 8, 0)
      })
    }))

  it.live("single-frame, empty, text and tiny fragmented messages", () =>
    Effect.gen(function*() {
      const text = new TextEncoder().encode("héllo")
      const server = yield* serve(goodAnswer, ({ socket }) => {
        socket.write(frame(0x2, chiralMessage(3, 10)))
        socket.write(frame(0x2, new Uint8Array(0)))
        socket.write(frame(0x1, text))
        socket.write(frame(0x2, Uint8Array.of(9), { fin: false }))
        socket.write(frame(0x0, Uint8Array.of(8, 7), { fin: true }))
      })
      const outcome = yield* runClient(server, (o) => o.messages.length === 4)
      assert.deepStrictEqual(outcome.messages.map((m) => Array.from(m)), [
        Array.from(chiralMessage(3, 10)),
        [],
        Array.from(text),
        [9, 8, 7]
      ])
    }))

  it.live("with writes shared, a peer that stops reading neither blocks this thread nor loses or mixes a frame", () =>
    Effect.gen(function*() {
      const count = 30
      const size = 512 * 1024
      const payload = (i: number) => new Uint8Array(size).fill(i + 1)
      let peer: Peer | undefined
      const server = yield* serve(goodAnswer, (p) => {
        // stop reading until told: the client's sends fill the socket's buffers
        p.socket.pause()
        peer = p
      })
      const acknowledged: Array<Error | undefined> = []
      let loopRan = false
      yield* runClient(server, (o) => o.opened, (client) => {
        assert.isDefined(client.shareWrites())
        setImmediate(() => {
          loopRan = true
        })
        for (let i = 0; i < count; i++) client.send([payload(i)], (error) => acknowledged.push(error))
      })
      // the sends returned at once: this thread's event loop went on while the peer read nothing
      yield* Effect.sleep(50)
      assert.isTrue(loopRan)
      assert.isBelow(acknowledged.length, count)
      peer!.socket.resume()
      yield* Effect.promise(() => peer!.frameCount(count))
      assert.strictEqual(peer!.frames.length, count)
      peer!.frames.forEach(([opcode, data, masked], i) => {
        assert.deepStrictEqual([opcode, masked, data.byteLength], [0x2, true, size])
        assert.isTrue(data.every((b) => b === i + 1), `frame ${i} is whole`)
      })
      while (acknowledged.length < count) yield* Effect.sleep(5)
      assert.deepStrictEqual(acknowledged, Array.from({ length: count }, () => undefined))
    }))

  it.live("sends masked binary frames; answers a ping with a pong of the same payload", () =>
    Effect.gen(function*() {
      let peerRef: Peer | undefined
      const server = yield* serve(goodAnswer, async (peer) => {
        peerRef = peer
        peer.socket.write(frame(0x9, Uint8Array.of(1, 2, 3)))
      })
      yield* runClient(server, (o) => o.opened, (client) => {
        client.send([Uint8Array.of(10, 11), Uint8Array.of(12)], () => {})
      })
      yield* Effect.promise(() => peerRef!.frameCount(2))
      const frames = peerRef!.frames.map(([op, payload, masked]) => [op, Array.from(payload), masked])
      assert.deepInclude(frames, [0x2, [10, 11, 12], true])
      assert.deepInclude(frames, [0xa, [1, 2, 3], true])
    }))

  it.live("a close frame from the server is answered and reported with its code", () =>
    Effect.gen(function*() {
      let peerRef: Peer | undefined
      const server = yield* serve(goodAnswer, (peer) => {
        peerRef = peer
        peer.socket.write(frame(0x8, Uint8Array.of(0x03, 0xe9, ...new TextEncoder().encode("bye"))))
      })
      const outcome = yield* runClient(server, () => false)
      assert.deepStrictEqual({ code: outcome.closed?.code, reason: outcome.closed?.reason }, { code: 1001, reason: "bye" })
      assert.isUndefined(outcome.closed?.error)
      yield* Effect.promise(() => peerRef!.frameCount(1))
      assert.deepStrictEqual(Array.from(peerRef!.frames[0]![1]), [0x03, 0xe9])
    }))

  it.live("protocol violations close with 1002: masked server frame, reserved bits, stray continuation", () =>
    Effect.gen(function*() {
      for (const bad of [
        frame(0x2, Uint8Array.of(1), { mask: true }),
        frame(0x2, Uint8Array.of(1), { rsv: 0x40 }),
        frame(0x0, Uint8Array.of(1))
      ]) {
        const server = yield* serve(goodAnswer, ({ socket }) => void socket.write(bad))
        const outcome = yield* runClient(server, () => false)
        assert.strictEqual(outcome.closed?.code, 1002)
        assert.strictEqual(outcome.closed?.error?.kind, "protocol")
      }
    }))

  it.live("handshake answers that are refused: HTTP error, wrong accept key, unrequested extension", () =>
    Effect.gen(function*() {
      const answers: ReadonlyArray<[Answer, RegExp]> = [
        [() => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", /Unexpected server response: 404$/],
        // a short line of text in the body is passed on (a Zenoh port says what it speaks)
        [
          () => "HTTP/1.1 400 Bad Request\r\nContent-Length: 20\r\n\r\nThis port speaks X.\n",
          /^Unexpected server response: 400 \(the server said: "This port speaks X\."\)$/
        ],
        // an HTML page is not quoted
        [() => "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<html><body>Not Found</body></html>\n", /^Unexpected server response: 404$/],
        [() => "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n", /Accept/],
        [
          (key) => goodAnswer(key).replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
          /extension permessage-deflate/
        ]
      ]
      for (const [answer, why] of answers) {
        const server = yield* serve(answer, () => {})
        const outcome = yield* runClient(server, () => false)
        assert.isFalse(outcome.opened)
        assert.strictEqual(outcome.closed?.error?.kind, "handshake")
        assert.match(outcome.closed!.error!.message, why)
      }
    }))

  it.live("the transport's reason for an answer to the upgrade: a 4xx is Refused (it will be again), a 5xx Unavailable (retried), not HTTP at all InvalidAddress", () =>
    Effect.gen(function*() {
      const answers: ReadonlyArray<[Answer, TransportError["reason"]]> = [
        [() => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", "Refused"],
        [() => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "Refused"],
        [() => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "Unavailable"],
        [() => "SSH-2.0-OpenSSH_9.2\r\n\r\n", "InvalidAddress"],
        [() => "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n", "InvalidAddress"]
      ]
      for (const [answer, reason] of answers) {
        const server = yield* serve(answer, () => {})
        const { port } = server.address() as Net.AddressInfo
        const error = yield* Effect.flip(
          Effect.scoped(WebSocketTransport.makeClient(`ws://127.0.0.1:${port}`).connect)
        )
        assert.strictEqual(error.reason, reason, `${answer("k").split("\r\n")[0]}: ${error.message}`)
      }
    }), 60_000)

  it.live("nobody listening is reported as unavailable", () =>
    Effect.gen(function*() {
      const server = yield* serve(goodAnswer, () => {})
      const port = (server.address() as Net.AddressInfo).port
      yield* Effect.sync(() => server.close())
      const outcome = yield* Effect.callback<Outcome["closed"]>((resume) => {
        WebSocketClient.connect({ host: "127.0.0.1", port, path: "/", hostHeader: "x", openTimeoutMillis: 2000 }, {
          onOpen: () => {},
          onMessage: () => {},
          onClose: (code, reason, error) => resume(Effect.succeed({ code, reason, error }))
        })
      })
      assert.strictEqual(outcome?.error?.kind, "unavailable")
    }))

  it.live("a loop that wakes with the open deadline and the connect both due says what had happened: a silent server, not nobody", () =>
    Effect.gen(function*() {
      // accepts, never answers the upgrade
      const port = yield* SilentServer.listen
      const outcome = yield* Effect.callback<Outcome["closed"]>((resume) => {
        WebSocketClient.connect({ host: "127.0.0.1", port, path: "/", hostHeader: "x", openTimeoutMillis: 50 }, {
          onOpen: () => {},
          onMessage: () => {},
          onClose: (code, reason, error) => resume(Effect.succeed({ code, reason, error }))
        })
        // a stall of this thread past the deadline: Node makes the connect call once this
        // returns, it completes at once on loopback, and the loop wakes with the timer due
        // and the connect's callback waiting to be polled
        const until = performance.now() + 300
        while (performance.now() < until) { /* a busy machine */ }
      })
      assert.strictEqual(outcome?.error?.kind, "silent", outcome?.error?.message)
    }))
})

// ── recycled receive memory ──────────────────────────────────────────────────

/** An obs_response whose images hold `seed` and depths `seed + 0.5` (2 cameras 64x48, ~43 KB). */
const observationFrame = (seed: number): Uint8Array =>
  encodeFrame({
    type: "obs_response",
    obs: {
      timestamp: seed,
      cameras: ["a", "b"].map((name) =>
        CameraFrame.make({
          name,
          timestamp: seed,
          image: Tensor.make("uint8", [48, 64, 3], new Uint8Array(48 * 64 * 3).fill(seed)),
          depth: Tensor.make("float32", [48, 64], new Float32Array(48 * 64).fill(seed + 0.5)),
          intrinsics: [600, 0, 32, 0, 600, 24, 0, 0, 1]
        })
      ),
      proprios: [],
      extra: {}
    }
  })

/** Decodes an observation, checks it holds `seed`, and returns camera b's depth (the rest is garbage). */
const depthOf = (message: Uint8Array, seed: number): Float32Array => {
  const decoded = decodeFrame(message)
  if (Result.isFailure(decoded) || decoded.success.type !== "obs_response") return assert.fail("an obs_response")
  const [a, b] = decoded.success.obs.cameras
  assert.isTrue((a!.image.data as Uint8Array).every((v) => v === seed), `message ${seed}'s image is whole`)
  const depth = b!.depth!.data as Float32Array
  assert.strictEqual(depth.buffer, message.buffer, "the depth is a view into the message")
  assert.isTrue(depth.every((v) => v === seed + 0.5), `message ${seed}'s depth is whole`)
  return depth
}

/** A client on a pool whose messages are taken one at a time (none kept by the harness). */
const openRecycling = (server: Net.Server, pool: ReceivePool) =>
  new Promise<{ readonly client: WebSocketClient.ClientSocket; readonly next: () => Promise<Uint8Array> }>((opened) => {
    const inbox: Array<Uint8Array> = []
    let waiting: ((message: Uint8Array) => void) | undefined
    const next = () =>
      new Promise<Uint8Array>((take) => {
        const first = inbox.shift()
        if (first !== undefined) take(first)
        else waiting = take
      })
    const client: WebSocketClient.ClientSocket = WebSocketClient.connect({
      host: "127.0.0.1",
      port: (server.address() as Net.AddressInfo).port,
      path: "/",
      hostHeader: "127.0.0.1",
      openTimeoutMillis: 10_000,
      receivePool: pool
    }, {
      onOpen: () => opened({ client, next }),
      onMessage: (message) => {
        const take = waiting
        waiting = undefined
        if (take !== undefined) take(message)
        else inbox.push(message)
      },
      onClose: () => {}
    })
  })

describe("WebSocketClient with a ReceivePool", () => {
  it.live("a held tensor keeps its message's memory; the others' memory is reused; the pool stays bounded", () =>
    Effect.gen(function*() {
      const count = 8
      // one message per request, so that each can be released before the next arrives
      const server = yield* serve(goodAnswer, async (peer) => {
        for (let seed = 0; seed < count; seed++) {
          await peer.frameCount(seed)
          peer.socket.write(frame(0x2, observationFrame(seed)))
        }
      })
      const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
      yield* Effect.promise(async () => {
        const { client, next } = await openRecycling(server, pool)
        let held: Float32Array | undefined = depthOf(await next(), 0)
        for (let seed = 1; seed < count; seed++) {
          client.send([Uint8Array.of(seed)], () => {})
          depthOf(await next(), seed)
          // this message's memory comes back once it is collected; message 0's must not
          assert.isTrue(await collectUntil(() => pool.stats().kept >= seed), `message ${seed}'s memory came back`)
          assert.isTrue(held.every((v) => v === 0.5), "the held depth is unchanged")
          assert.isTrue(lending.isLent(held.buffer), "and its memory still lent")
          assert.isAtMost(pool.stats().free, 2)
        }
        assert.isAtLeast(pool.stats().reused, count - 2, "messages 2… arrived in recycled memory")
        const lent = held.buffer
        held = undefined
        assert.isTrue(await collectUntil(() => !lending.isLent(lent)), "message 0's memory comes back once dropped")
        client.destroy()
      })
    }))

  it.live("a buffer outgrown by a fragmented message goes back to the pool at once", () =>
    Effect.gen(function*() {
      const small = chiralMessage(4, 100_000)
      const large = chiralMessage(4, 300_000)
      const fragmented = (m: Uint8Array) => {
        const cut = Math.floor(m.length / 3)
        return Uint8Array.from([
          ...frame(0x2, m.subarray(0, cut), { fin: false }),
          ...frame(0x0, m.subarray(cut, 2 * cut), { fin: false }),
          ...frame(0x0, m.subarray(2 * cut), { fin: true })
        ])
      }
      const server = yield* serve(goodAnswer, async (peer) => {
        peer.socket.write(fragmented(small))
        await peer.frameCount(1)
        peer.socket.write(fragmented(large))
      })
      const pool = new ReceivePool({ maxFree: 2, minBytes: 1024 })
      yield* Effect.promise(async () => {
        const { client, next } = await openRecycling(server, pool)
        const first = await next()
        assert.deepStrictEqual(Array.from(first), Array.from(small))
        client.send([Uint8Array.of(1)], () => {})
        // the second is placed with room for the first's size, then grows
        const second = await next()
        assert.deepStrictEqual(Array.from(second), Array.from(large))
        assert.isTrue(pool.owns(second.buffer))
        assert.isAtLeast(pool.stats().kept, 1, "the outgrown buffer is back without a collection")
        assert.isTrue(lending.isLent(first.buffer) && lending.isLent(second.buffer), "the delivered ones are lent")
        client.destroy()
      })
    }))
})
