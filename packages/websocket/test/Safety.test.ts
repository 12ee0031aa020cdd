// Robot-safe connections over real loopback sockets (issue 10, server side):
// the action gate and the connection logs and hooks every transport owes
// (@chiral/testing/SafetyContract), and what only WebSocket has: keepalive
// against frozen and mid-frame-stalled peers, the access token, fairness
// under a flood of frames, and text messages. Every wait is on a condition
// (a close seen, a count reached), never on elapsed time.
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Schedule } from "effect"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import * as Frames from "@chiral/testing/Frames"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import * as Robot from "@chiral/testing/Robot"
import { serverSafetyContract, takeApplied } from "@chiral/testing/SafetyContract"
import * as Pair from "@chiral/testing/Pair"
import { WebSocketTransport } from "../src/index.js"
import * as Keepalive from "../src/Keepalive.js"

/** A WebSocket server on a free loopback port with `options`, and clients that reach it. */
const transports = (options: WebSocketTransport.ServerOptions = {}) =>
  Layer.unwrap(
    Effect.map(ServerTransport, (server) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address)))
  ).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0, ...options })))

/** Waits (real time, bounded) until `check` holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(
    Effect.filterOrFail((ok) => ok),
    Effect.retry({ schedule: Schedule.spaced(5), times: 2000 }),
    Effect.orDie
  )

const action = Frames.applyAction

const startRobot = Pair.startRobotWith

serverSafetyContract({
  name: "WebSocket",
  transports: transports(),
  clientVia: (port) => WebSocketTransport.makeClient(`ws://127.0.0.1:${port}`),
  connectionId: /^ws:\/\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+$/
})

describe("keepalive (server pings)", () => {
  it.live("a peer that never answers, and one stalled mid-frame, are closed; a peer that answers pings stays", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const { server } = yield* startRobot()
        const frozen = yield* RawWebSocket.connect(server.address)
        const stalled = yield* RawWebSocket.connect(server.address)
        // announce 1000 bytes, deliver 10, then nothing (the socket stays open)
        stalled.sendFrame(new Uint8Array(10), { declaredLength: 1000 })
        const live = yield* RawWebSocket.connect(server.address)
        const pings = live.answerPings()
        const client = yield* PolicyClient.make({ quiet: true })
        yield* client.getMetadata
        yield* RawWebSocket.closedByServer(frozen)
        yield* RawWebSocket.closedByServer(stalled)
        yield* eventually(Effect.map(server.connections, (n) => n === 2))
        // several more rounds of pings: the peers that answer them are kept
        const seen = pings()
        yield* eventually(Effect.sync(() => pings() >= seen + 3))
        expect(yield* server.connections).toBe(2)
        expect(live.socket.destroyed).toBe(false)
        expect((yield* client.getObs).cameras.length).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(transports({ pingInterval: 40, pingTimeout: 400 })), Effect.provide(logs.layer))
      const closed = logs.lines.filter((l) => l.includes("keepalive timeout"))
      expect(closed.length).toBe(2)
      expect(closed[0]).toMatch(/no answer from ws:\/\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+ within 400ms of a ping/)
    }))

  it.live("200 connections stalled in the middle of a frame are all closed", () =>
    Effect.gen(function*() {
      const { server } = yield* startRobot()
      // each upgrade answered 101: the server took every one of them
      const stalled = yield* Effect.forEach(Array.from({ length: 200 }), () =>
        Effect.tap(RawWebSocket.connect(server.address), (raw) =>
          Effect.sync(() => raw.sendFrame(new Uint8Array(100), { declaredLength: 100_000 }))), { concurrency: 20 })
      yield* Effect.forEach(stalled, RawWebSocket.closedByServer, { discard: true })
      yield* eventually(Effect.map(server.connections, (n) => n === 0))
    }).pipe(Effect.scoped, Effect.provide(transports({ pingInterval: 50, pingTimeout: 100 }))), 60_000)

  it("the settings: 20 s / 20 s by default (as the references); an interval of 0 or Infinity is off, not the default", () => {
    const settings = (options: Keepalive.KeepaliveOptions) => {
      const resolved = Keepalive.resolve(options)
      return typeof resolved === "object" ? [Duration.toMillis(resolved.interval), Duration.toMillis(resolved.timeout)] : resolved
    }
    expect(settings({})).toEqual([20_000, 20_000])
    expect(settings({ pingInterval: 50, pingTimeout: "2 seconds" })).toEqual([50, 2000])
    expect(settings({ pingInterval: 0 })).toBeUndefined()
    expect(settings({ pingInterval: Infinity })).toBeUndefined()
    expect(settings({ pingInterval: -1 })).toContain("pingInterval -1")
    expect(settings({ pingTimeout: 0 })).toContain("pingTimeout 0")
  })

  it.live("pingInterval 0 turns keepalive off; a negative timeout is refused", () =>
    Effect.gen(function*() {
      const bad = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, pingTimeout: -1 }).pipe(
        Effect.scoped,
        Effect.flip
      )
      expect(bad.message).toContain("pingTimeout")
      const off = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, pingInterval: 0 })
      const server = yield* PolicyServer.make({ handlers: { reset: Effect.die("unused"), applyAction: () => Effect.void } }).pipe(
        Effect.provideService(ServerTransport, off)
      )
      const raw = yield* RawWebSocket.connect(server.address)
      const pings = raw.answerPings()
      yield* Effect.sleep(200)
      expect(pings()).toBe(0)
    }).pipe(Effect.scoped))
})

describe("access token", () => {
  it.live("without the token, or with a wrong one, the upgrade is answered 401; with it in the URI or a Bearer header, 101", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const { server } = yield* startRobot()
        const status = (options?: RawWebSocket.HandshakeOptions) => RawWebSocket.upgradeStatus(server.address, options)
        expect(yield* status()).toBe(401)
        expect(yield* status({ path: "/?token=wrong" })).toBe(401)
        expect(yield* status({ path: "/?token=s3cret-but-longer" })).toBe(401)
        expect(yield* status({ headers: { Authorization: "Bearer nope" } })).toBe(401)
        expect(yield* status({ path: "/?token=s3cret" })).toBe(101)
        expect(yield* status({ path: "/chiral?x=1&token=s3cret" })).toBe(101)
        expect(yield* status({ headers: { Authorization: "Bearer s3cret" } })).toBe(101)
        // our client sends its URI's path and query: the token travels in it
        const client = yield* PolicyClient.make({ quiet: true }).pipe(
          Effect.provide(WebSocketTransport.layerClient(`${server.address}/?token=s3cret`))
        )
        expect((yield* client.getObs).cameras.length).toBe(2)
        // the client shows its address without the token
        expect(client.address).toBe(`${server.address}/?token=***`)
        // a client refused says why in words, and what to do, without the token
        const refusedWith = (uri: string) =>
          Effect.flip(PolicyClient.make({ quiet: true }).pipe(Effect.provide(WebSocketTransport.layerClient(uri))))
        const none = yield* refusedWith(server.address)
        expect(none).toMatchObject({ _tag: "TransportError", reason: "Refused" })
        expect(none.message).toContain("the server requires an access token (HTTP 401): add ?token=T to the URI")
        const wrong = yield* refusedWith(`${server.address}/?token=wrong`)
        expect(wrong.message).toContain("the server refused the access token given (HTTP 401)")
        expect(wrong.message).not.toContain("wrong")
      }).pipe(Effect.scoped, Effect.provide(transports({ token: "s3cret" })), Effect.provide(logs.layer))
      const refused = logs.lines.filter((l) => l.includes("refused a connection from 127.0.0.1:"))
      expect(refused.length).toBe(6)
      expect(refused.filter((l) => l.includes("missing token")).length).toBe(2)
      expect(refused.filter((l) => l.includes("wrong token")).length).toBe(4)
      expect(logs.lines.some((l) => l.includes("s3cret"))).toBe(false)
    }))

  it("a token in a URI is never shown", () => {
    expect(WebSocketTransport.redactToken("ws://robot:8765/?token=s3cret")).toBe("ws://robot:8765/?token=***")
    expect(WebSocketTransport.redactToken("ws://robot:8765/chiral?x=1&token=s3cret")).toBe("ws://robot:8765/chiral?x=1&token=***")
    expect(WebSocketTransport.redactToken("ws://robot:8765")).toBe("ws://robot:8765")
    expect(WebSocketTransport.redactToken("not a uri?token=s3cret")).toBe("not a uri?token=***")
  })

  it("only loopback hosts are exempt from the no-token warning", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) expect(WebSocketTransport.isLoopbackHost(host)).toBe(true)
    for (const host of ["0.0.0.0", "::", "10.0.0.7", "robot.local", "1127.0.0.1"]) {
      expect(WebSocketTransport.isLoopbackHost(host)).toBe(false)
    }
  })

  it.live("a server on every interface without a token warns, with advice right for code and for every chiral command", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const server = yield* WebSocketTransport.makeServer({ host: "0.0.0.0", port: 0 }).pipe(Effect.provide(logs.layer))
      const warning = logs.lines.find((l) => l.includes("without a token"))
      expect(warning).toBe(
        `Warn: chiral: serving ${server.address} without a token: anyone who can reach this port can drive the robot (set a token: ServerOptions.token, or a chiral command's --token or CHIRAL_TOKEN)`
      )
    }).pipe(Effect.scoped))

  it.live("a server on a loopback host without a token does not warn; an empty token is refused", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0 }).pipe(Effect.provide(logs.layer))
      expect(logs.lines.some((l) => l.includes("without a token"))).toBe(false)
      const empty = yield* WebSocketTransport.makeServer({ host: "127.0.0.1", port: 0, token: "" }).pipe(Effect.flip)
      expect(empty.message).toContain("the token is empty")
    }).pipe(Effect.scoped))
})

/**
 * A server whose `applyAction` runs `apply` and counts, a PolicyClient that has
 * had one observation, and `flood(n)`: n apply_action frames from a raw client
 * in one write (the kernel and Node's socket buffers hold what the server has
 * not read yet). The server applies every action as read: coalesced, a flood
 * would reach the handler only a few times, and these tests are about the
 * reader's turns when each action is handled.
 */
const floodSetup = (apply: () => void = () => {}) =>
  Effect.gen(function*() {
    const state = { applied: 0 }
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      coalesceActions: false,
      handlers: {
        reset: Effect.die("unused"),
        applyAction: () =>
          Effect.sync(() => {
            apply()
            state.applied++
          })
      }
    })
    const client = yield* PolicyClient.make({ quiet: true })
    yield* client.getObs
    const flooder = yield* RawWebSocket.connect(server.address)
    const frame = action(0)
    const one = Buffer.alloc(frame.byteLength)
    one.set(frame)
    const flood = (count: number) => flooder.socket.write(Buffer.concat(Array.from({ length: count }, () => frameWithZeroMask(one))))
    return { state, client, flood }
  })

describe("fairness under a flood", () => {
  it.live("a client flooding 100k apply_action frames does not hold up another client's getObs", () =>
    Effect.gen(function*() {
      const floodCount = 100_000
      const { client, flood, state } = yield* floodSetup()
      flood(floodCount)
      const during: Array<number> = []
      for (let i = 0; i < 50; i++) {
        yield* client.getObs
        during.push(state.applied)
      }
      // 50 round trips took a small share of the flood's frames (each waited for a few dozen, not thousands)
      expect(during[49]!).toBeLessThan(floodCount / 2)
      yield* eventually(Effect.sync(() => state.applied === floodCount))
    }).pipe(Effect.scoped, Effect.provide(transports())))

  it.live("with a slow applyAction (2 ms each), a flood holds another client's getObs up by a few actions, not a turn of 16", () =>
    Effect.gen(function*() {
      const floodCount = 400
      // a handler that holds the thread, as one talking to hardware synchronously might
      const { client, flood, state } = yield* floodSetup(() => {
        const until = performance.now() + 2
        while (performance.now() < until);
      })
      flood(floodCount)
      yield* eventually(Effect.sync(() => state.applied > 0))
      // flood actions applied while each getObs was in flight, for those answered during the flood
      const during: Array<number> = []
      while (state.applied < floodCount) {
        const before = state.applied
        yield* client.getObs
        if (state.applied < floodCount) during.push(state.applied - before)
      }
      expect(during.length).toBeGreaterThan(10)
      // The reader yields after 1 ms of handling: one slow action per turn of the event loop,
      // so a round trip waits for a few of them (with turns of 16 frames it was 16–48).
      expect(Math.max(...during)).toBeLessThanOrEqual(8)
    }).pipe(Effect.scoped, Effect.provide(transports())))
})

/** A masked client frame with mask key 0 (valid; the payload goes as is). */
const frameWithZeroMask = (payload: Buffer): Buffer => {
  const n = payload.byteLength
  const head = n < 126 ? Buffer.of(0x82, 0x80 | n) : Buffer.of(0x82, 0x80 | 126, n >> 8, n & 255)
  return Buffer.concat([head, Buffer.alloc(4), payload])
}

describe("text messages", () => {
  it.live("a text message is logged as a dropped text message, not as a frame with a huge header_len", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const { recorder, server } = yield* startRobot()
        const raw = yield* RawWebSocket.connect(server.address)
        raw.sendFrame(new TextEncoder().encode("hello, robot"), { opcode: 1 })
        raw.sendFrame(new TextEncoder().encode("again"), { opcode: 1 })
        raw.sendFrame(action(7))
        expect(yield* takeApplied(recorder, 1)).toEqual([7])
      }).pipe(Effect.scoped, Effect.provide(transports()), Effect.provide(logs.layer))
      const text = logs.lines.filter((l) => l.includes("dropped a text message"))
      expect(text.length).toBe(1)
      expect(text[0]).toContain("(12 bytes): chiral messages are binary frames")
      expect(logs.lines.some((l) => l.includes("header_len"))).toBe(false)
      expect(logs.lines.some((l) => l.includes("2 text messages from") && l.includes("dropped in all"))).toBe(true)
    }))
})
