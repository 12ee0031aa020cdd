/**
 * What the Zenoh transport says when something is wrong, over real loopback
 * sockets: every bad session on the server's port is logged once with its
 * reason; a client whose session breaks says what broke (not "nobody
 * there"); an observation over the client's reassembly cap fails with its
 * size, the cap and how to raise it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schedule } from "effect"
import * as Net from "node:net"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { ZenohTransport } from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"
import * as Raw from "../../zenoh/test/RawPeer.js"

const portOf = (address: string) => Number(address.split(":").pop())

/** Sends `bytes` on a fresh TCP connection and waits until the other side closes it. */
const sendRaw = (port: number, bytes: Uint8Array) =>
  Effect.callback<void>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port }, () => void socket.end(bytes))
    socket.on("error", () => {})
    socket.resume()
    socket.on("close", () => resume(Effect.void))
    return Effect.sync(() => socket.destroy())
  })

/**
 * A relay that passes the first `keep` batches of one direction untouched and
 * then overwrites the body of every later batch with 0xff bytes (lengths
 * kept): what the peer receives from then on never decodes.
 */
const corruptingRelay = (port: number, direction: "toClient" | "toServer", keep: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly sockets: Array<Net.Socket> }>((resume) => {
      const sockets: Array<Net.Socket> = []
      const server = Net.createServer((inbound) => {
        const outbound = Net.connect({ host: "127.0.0.1", port })
        for (const s of [inbound, outbound]) s.on("error", () => {})
        const corrupting = (to: Net.Socket) => {
          let pending = Buffer.alloc(0)
          let batches = 0
          return (chunk: Buffer) => {
            pending = Buffer.concat([pending, chunk])
            while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16LE(0)) {
              const size = 2 + pending.readUInt16LE(0)
              const batch = Buffer.from(pending.subarray(0, size))
              pending = pending.subarray(size)
              if (batches++ >= keep) batch.fill(0xff, 2)
              to.write(batch)
            }
          }
        }
        inbound.on("data", direction === "toServer" ? corrupting(outbound) : (d: Buffer) => void outbound.write(d))
        outbound.on("data", direction === "toClient" ? corrupting(inbound) : (d: Buffer) => void inbound.write(d))
        // Ended, not destroyed: what one side sent last (a CLOSE, say) still reaches the other.
        // Destroyed at once, bytes the relay had not flushed yet (on a busy machine) were lost.
        inbound.on("close", () => outbound.end())
        outbound.on("close", () => inbound.end())
        sockets.push(inbound, outbound)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.sync(() => {
        for (const s of sockets) s.destroy()
        server.close()
      })
  ).pipe(Effect.map(({ server }) => (server.address() as Net.AddressInfo).port))

describe("Zenoh server: bad sessions are logged once, with their reason", () => {
  it.live("garbage, another protocol version, an undecodable frame, a message over the cap: one warning each", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const transport = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0, maxMessageSize: 100_000 }).pipe(
        Effect.provide(logs.layer)
      )
      yield* Pair.startServerOnly().pipe(Effect.provideService(ServerTransport, transport))
      const port = portOf(transport.address)
      const warnings = () => logs.lines.filter((line) => line.startsWith("Warn") && line.includes("Zenoh"))
      const waitForWarnings = (n: number) =>
        Effect.repeat(Effect.sync(() => warnings().length), { until: (k) => k >= n, schedule: Schedule.spaced(10) })

      // an HTTP request, twice
      const http = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: robot\r\n\r\n")
      yield* sendRaw(port, http)
      yield* sendRaw(port, http)
      // an INIT-Syn of protocol version 8
      yield* sendRaw(port, Uint8Array.from([0x15, 0x00, 0x81, 0x08, 0xf1, ...Array.from({ length: 16 }, (_, i) => i + 1), 0x27, 0x01]))
      // a session that sends a frame that does not decode
      const raw = yield* Raw.connectAndOpen(port)
      raw.send(new Uint8Array([6, 0, 0x25, 0x00, 0x3d, 0x00, 0x7f, 0x61]))
      // a session that sends a message over the server's cap: 3 fragments of 60 000 bytes
      const big = yield* Raw.connectAndOpen(port)
      for (let sn = 0; sn < 3; sn++) {
        big.send(Raw.batch({
          _tag: "Fragment",
          reliable: true,
          more: true,
          sn,
          first: sn === 0,
          drop: false,
          extensions: [],
          payload: new Uint8Array(60_000)
        }))
      }
      yield* waitForWarnings(5)
      const lines = warnings()
      assert.strictEqual(lines.length, 5, lines.join("\n"))
      assert.strictEqual(
        lines.filter((l) => l.includes("refused") && l.includes(`the peer speaks HTTP ("GET / HTTP/1.1"): a web or WebSocket client`))
          .length,
        2
      )
      assert.strictEqual(lines.filter((l) => l.includes("unsupported protocol version 0x8")).length, 1)
      assert.strictEqual(lines.filter((l) => l.includes("ended") && l.includes("cannot decode")).length, 1)
      assert.strictEqual(lines.filter((l) => l.includes("ended") && l.includes("reassembly") && l.includes("limit 100000")).length, 1)
    }).pipe(Effect.scoped))
})

const serverLayer = ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })

describe("Zenoh client: a session that breaks says what broke", () => {
  it.live("bytes from the server that do not decode: the client fails at once with what it could not read", () =>
    Effect.gen(function*() {
      const server = yield* ServerTransport
      yield* Pair.startServerOnly()
      // INIT-Ack and OPEN-Ack pass; the declarations and all after never decode
      const port = yield* corruptingRelay(portOf(server.address), "toClient", 2)
      const exit = yield* Effect.exit(
        Effect.scoped(ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, { probeInterval: 50 }).connect)
      )
      const error = failure(exit)
      assert.strictEqual(error.reason, "Read")
      assert.include(error.detail, "the session with the server broke: cannot decode")
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))

  it.live("bytes the server could not decode: the client fails at once, saying the server ended the session as invalid", () =>
    Effect.gen(function*() {
      const server = yield* ServerTransport
      yield* Pair.startServerOnly()
      // INIT-Syn and OPEN-Syn pass; what the client declares and publishes never decodes
      const port = yield* corruptingRelay(portOf(server.address), "toServer", 2)
      const exit = yield* Effect.exit(
        Effect.scoped(ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, { probeInterval: 50 }).connect)
      )
      const error = failure(exit)
      assert.strictEqual(error.reason, "Closed")
      assert.include(error.detail, "the server ended the session")
      assert.include(error.detail, "INVALID")
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))

  it.live("PolicyClient over such a session fails with the reason, not a wait for a server", () =>
    Effect.gen(function*() {
      const server = yield* ServerTransport
      yield* Pair.startServerOnly()
      const port = yield* corruptingRelay(portOf(server.address), "toClient", 2)
      const exit = yield* Effect.exit(
        PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, { probeInterval: 50 }))
        )
      )
      assert.include(failure(exit).message, "cannot decode")
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))
})

describe("Zenoh client: the reassembly cap", () => {
  it.live("an observation over the client's cap fails with its size, the cap and how to raise it; under it, it arrives", () =>
    Effect.gen(function*() {
      const server = yield* ServerTransport
      const robot = yield* PolicyServer.make({
        cameras: [{ name: "cam", height: 480, width: 640, channels: 3, hasDepth: true }],
        handlers: { reset: Effect.die("unused"), applyAction: () => Effect.void }
      })
      assert.isDefined(robot)
      const clientWith = (maxMessageSize: number) =>
        PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(server.address, { maxMessageSize }))
        )
      // 640×480 RGB + float32 depth: 2 150 400 bytes of tensors
      const small = yield* clientWith(1024 * 1024)
      const exit = yield* Effect.exit(small.getObs)
      assert.isTrue(Exit.isFailure(exit))
      const message = failure(exit).message
      assert.include(message, "Disconnected")
      assert.include(message, "is over this side's limit of 1 MiB (1048576 bytes)")
      assert.include(message, "--max-message-size")
      const enough = yield* clientWith(4 * 1024 * 1024)
      assert.strictEqual((yield* enough.getObs).cameras[0]!.image.data.byteLength, 640 * 480 * 3)
    }).pipe(Effect.scoped, Effect.provide(serverLayer)))
})
