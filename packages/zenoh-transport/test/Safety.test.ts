// Issue 10's robot-side safety over Zenoh, on real loopback sockets: the
// action gate (NaN never reaches the handler, a stale burst behind a frozen
// link is dropped whole, one controlling client), connection logs and hooks
// with the peer's address. A token is not part of Zenoh's protocol (see the
// README): nothing to test here. Every wait is on a condition.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Queue, Ref, Schedule, Stream } from "effect"
import { type ActionStats, ClientTransport, type ConnectionInfo, PolicyServer, ServerTransport } from "@chiral/core"
import * as Frames from "@chiral/testing/Frames"
import * as Pair from "@chiral/testing/Pair"
import { relayTo } from "@chiral/testing/Relay"
import * as Robot from "@chiral/testing/Robot"
import { ZenohTransport } from "../src/index.js"

/**
 * Raw chiral connections (frames in, frames out; the dispatcher on this
 * thread, so one peer session each) to a Zenoh server on a free port.
 */
const transports = Layer.unwrap(
  Effect.map(ServerTransport, (server) =>
    Layer.succeed(
      ClientTransport,
      ZenohTransport.makeClient(server.address, { probeInterval: 50, thread: "main", lease: 60_000 })
    ))
).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })))

const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(5), times: 4000 }), Effect.orDie)

const nonFiniteFrame = Frames.nonFiniteAction()
const action = Frames.applyAction

const startRobot = Pair.startRobotWith

const takeApplied = (recorder: Robot.Recorder, n: number) =>
  Effect.map(Effect.replicateEffect(Queue.take(recorder.actions), n), (list) => list.map((a) => a.action.data[0]))

describe("the action gate over Zenoh", () => {
  it.live("NaN/±Inf (the field frame) never reach the handler; the next good action does", () =>
    Effect.gen(function*() {
      const { recorder, server } = yield* startRobot()
      const raw = yield* ClientTransport.use((t) => t.connect)
      yield* raw.send(nonFiniteFrame)
      yield* raw.send(action(5))
      expect(yield* takeApplied(recorder, 1)).toEqual([5])
      expect((yield* server.actionStats).dropped.invalid).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(transports)))

  it.live("a stale burst after a frozen link is dropped whole: 0 of 30 applied, one log line for the burst", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const stats = yield* Effect.gen(function*() {
        const { recorder, server } = yield* startRobot({ maxActionAge: "100 millis" })
        const relay = yield* relayTo(Number(server.address.split(":").pop()))
        const client = yield* ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`, {
          probeInterval: 50,
          thread: "main",
          lease: 60_000
        }).connect
        yield* server.updateImage("wrist", new Uint8Array(72))
        const stamp = (yield* server.makeObs()).cameras[0]!.timestamp
        yield* client.send(action(1, { wrist: stamp }))
        expect(yield* takeApplied(recorder, 1)).toEqual([1])
        // the link freezes: 30 actions computed from that observation wait in it
        yield* relay.hold()
        for (let i = 0; i < 30; i++) yield* client.send(action(100 + i, { wrist: stamp }))
        // until they are older than maxActionAge on the server's capture clock
        yield* eventually(Effect.map(server.makeObs(), (obs) => obs.timestamp - stamp > 0.1))
        yield* relay.release()
        yield* server.updateImage("wrist", new Uint8Array(72))
        const fresh = (yield* server.makeObs()).cameras[0]!.timestamp
        yield* client.send(action(2, { wrist: fresh }))
        expect(yield* takeApplied(recorder, 1)).toEqual([2])
        return yield* server.actionStats
      }).pipe(Effect.scoped, Effect.provide(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })), Effect.provide(logs.layer))
      expect(stats.accepted).toBe(2)
      expect(stats.dropped.stale).toBe(30)
      expect(logs.lines.filter((l) => l.includes("refused a stale action")).length).toBe(1)
      expect(logs.lines.filter((l) => l.includes("30 stale actions from")).length).toBe(1)
    }))

  it.live("singleController: another peer's actions are refused and counted, its observations served", () =>
    Effect.gen(function*() {
      const { recorder, server } = yield* startRobot({ singleController: true })
      const first = yield* ClientTransport.use((t) => t.connect)
      const second = yield* ClientTransport.use((t) => t.connect)
      yield* first.send(action(1))
      expect(yield* takeApplied(recorder, 1)).toEqual([1])
      yield* second.send(action(2))
      yield* second.send(action(3))
      yield* second.send(Frames.obsRequest)
      const reply = yield* second.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(reply.length).toBe(1)
      yield* eventually(Effect.map(server.actionStats, (s: ActionStats) => s.dropped.notController === 2))
      yield* first.send(action(4))
      expect(yield* takeApplied(recorder, 1)).toEqual([4])
      expect((yield* server.controller)?.peer).toMatch(/^127\.0\.0\.1:\d+$/)
    }).pipe(Effect.scoped, Effect.provide(transports)))
})

describe("connection logs and hooks over Zenoh", () => {
  it.live("each peer session opening and closing is logged with its address; onConnect/onDisconnect get it", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const events = yield* Ref.make<ReadonlyArray<ConnectionInfo>>([])
      yield* Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          handlers: {
            ...Robot.handlers(recorder),
            onConnect: (info) => Ref.update(events, (list) => [...list, info]),
            onDisconnect: (info) => Ref.update(events, (list) => [...list, info])
          }
        })
        yield* Effect.scoped(Effect.gen(function*() {
          const raw = yield* ClientTransport.use((t) => t.connect)
          yield* raw.send(action(1))
          yield* takeApplied(recorder, 1)
        }))
        yield* eventually(Effect.map(server.connections, (n) => n === 0))
      }).pipe(Effect.scoped, Effect.provide(transports), Effect.provide(logs.layer))
      const [connected, disconnected] = yield* Ref.get(events)
      expect(connected!.peer).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(connected!.id).toContain("zid ")
      expect(disconnected).toEqual(connected)
      expect(logs.lines.some((l) => l.startsWith("Info") && l.includes(`connection opened: ${connected!.id}`))).toBe(true)
      expect(logs.lines.some((l) => l.includes(`connection closed: ${connected!.id} (1 actions applied, 0 refused)`))).toBe(
        true
      )
    }))
})
