// What PolicyServer owes a robot over any transport, on real loopback
// connections (issue 10, server side): the action gate (NaN never reaches the
// handler, a stale burst behind a frozen link is dropped whole, one
// controlling client), only the newest of actions arriving together applied,
// and connection logs and hooks with the peer's address.
// Registered once per transport by its Safety tests, beside the tests that
// only it has (pings, tokens, text messages...). Every wait is on a condition
// (a count reached, a close seen), never on elapsed time.
import { decodeFrame } from "@chiral/protocol"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue, Ref, Result, Schedule, Stream } from "effect"
import { type ActionStats, ClientTransport, type ConnectionInfo, PolicyServer } from "@chiral/core"
import * as Frames from "./Frames.js"
import * as Pair from "./Pair.js"
import { relayTo } from "./Relay.js"
import * as Robot from "./Robot.js"

/** A transport as the server-side contract uses it. */
export interface SafetyTransport {
  /** Its name in the tests' titles ("WebSocket"). */
  readonly name: string
  /** A server on a free loopback port, and raw clients (frames in, frames out) that reach it. */
  readonly transports: Pair.Transports
  /** A raw client reaching a server at `port` on 127.0.0.1 (a relay in front of it). */
  readonly clientVia: (port: number) => ClientTransport["Service"]
  /** What a connection's id looks like; it names the peer's address in any case. */
  readonly connectionId: RegExp
}

/** The TCP port of a server's address (`ws://127.0.0.1:8765`, `tcp/127.0.0.1:7447`). */
export const portOf = (address: string) => Number(address.split(":").pop())

/** Waits (real time, bounded: 20 s) until `check` holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(5), times: 4000 }), Effect.orDie)

/** The type of a frame, or why it does not decode. */
export const decodeType = (frame: Uint8Array) => {
  const decoded = decodeFrame(frame)
  return Result.isSuccess(decoded) ? decoded.success.type : `error: ${decoded.failure.message}`
}

/** First values of the next `n` actions the handler receives. */
export const takeApplied = (recorder: Robot.Recorder, n: number) =>
  Effect.map(Effect.replicateEffect(Queue.take(recorder.actions), n), (list) => list.map((a) => a.action.data[0]))

const action = Frames.applyAction

/**
 * The stale burst's maxActionAge (s): longer than any stall of the test
 * process (seconds, on a busy machine) between a fresh action's observation
 * and its arrival, so that only the burst held in the frozen link is ever
 * old enough to be refused.
 */
const staleAfterSeconds = 4

/** Registers the server-side safety tests over `transport`. */
export const serverSafetyContract = (transport: SafetyTransport) => {
  describe(`the action gate over ${transport.name}`, () => {
    it.live("NaN/±Inf (the field frame) never reach the handler; the next good action does", () =>
      Effect.gen(function*() {
        // the two are sent together: each is judged, none superseded
        const { recorder, server } = yield* Pair.startRobotWith({ coalesceActions: false })
        const raw = yield* ClientTransport.use((t) => t.connect)
        yield* raw.send(Frames.nonFiniteAction())
        yield* raw.send(action(5))
        expect(yield* takeApplied(recorder, 1)).toEqual([5])
        expect((yield* server.actionStats).dropped.invalid).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(transport.transports)))

    for (const coalesceActions of [false, true]) {
      const title = coalesceActions
        ? "with coalescing (the default): the older superseded, the newest refused as stale"
        : "each action judged by the gate: 30 stale, one log line for the burst"
      it.live(`a stale burst after a frozen link is dropped whole, 0 of 30 applied; ${title}`, () =>
        Effect.gen(function*() {
          const logs = yield* Robot.captureLogs
          const stats = yield* Effect.gen(function*() {
            const { recorder, server } = yield* Pair.startRobotWith({ maxActionAge: `${staleAfterSeconds} seconds`, coalesceActions })
            const relay = yield* relayTo(portOf(server.address))
            const client = yield* transport.clientVia(relay.port).connect
            yield* server.updateImage("wrist", new Uint8Array(72))
            const stamp = (yield* server.makeObs()).cameras[0]!.timestamp
            yield* client.send(action(1, { wrist: stamp }))
            expect(yield* takeApplied(recorder, 1)).toEqual([1])
            // the link freezes: 30 actions computed from that observation wait in it
            yield* relay.hold()
            // each send completes once the bytes are with the operating system: all 30 have left the client
            for (let i = 0; i < 30; i++) yield* client.send(action(100 + i, { wrist: stamp }))
            // until they are older than maxActionAge on the server's capture clock
            yield* eventually(Effect.map(server.makeObs(), (obs) => obs.timestamp - stamp > staleAfterSeconds))
            yield* relay.release()
            // the burst handled on its own, before a fresh action (which would supersede it too)
            yield* eventually(Effect.map(server.actionStats, (s) => s.dropped.stale + s.dropped.superseded === 30))
            yield* server.updateImage("wrist", new Uint8Array(72))
            const fresh = (yield* server.makeObs()).cameras[0]!.timestamp
            yield* client.send(action(2, { wrist: fresh }))
            expect(yield* takeApplied(recorder, 1)).toEqual([2])
            return yield* server.actionStats
          }).pipe(Effect.scoped, Effect.provide(transport.transports), Effect.provide(logs.layer))
          expect(stats.accepted).toBe(2)
          expect(logs.lines.filter((l) => l.includes("refused a stale action")).length).toBe(1)
          if (coalesceActions) {
            // the newest of each part the burst arrived in (one, now and then two) refused as stale
            expect(stats.dropped.stale).toBeLessThanOrEqual(2)
            expect(stats.dropped.superseded).toBe(30 - stats.dropped.stale)
            expect(logs.lines.filter((l) => l.includes("arrived together")).length).toBe(1)
          } else {
            expect(stats.dropped).toMatchObject({ stale: 30, superseded: 0 })
            expect(logs.lines.filter((l) => l.includes("30 stale actions from")).length).toBe(1)
          }
        }))
    }

    it.live("a burst after a frozen link, with default settings: the newest of 30 is applied, the older superseded, never a run of them", () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        const { applied, stats } = yield* Effect.gen(function*() {
          const { recorder, server } = yield* Pair.startRobotWith()
          const relay = yield* relayTo(portOf(server.address))
          const client = yield* transport.clientVia(relay.port).connect
          yield* client.send(action(1))
          expect(yield* takeApplied(recorder, 1)).toEqual([1])
          // the link freezes while the client goes on dispatching: 30 ticks' actions wait in it
          yield* relay.hold()
          for (let i = 0; i < 30; i++) yield* client.send(action(100 + i))
          yield* relay.release()
          // What the relay holds usually reaches the server in one read, now and
          // then in two: then the newest of each part is applied.
          const applied: Array<number> = []
          while (applied.at(-1) !== 129) applied.push(...(yield* takeApplied(recorder, 1)).map(Number))
          yield* client.send(action(2))
          expect(yield* takeApplied(recorder, 1)).toEqual([2])
          return { applied, stats: yield* server.actionStats }
        }).pipe(Effect.scoped, Effect.provide(transport.transports), Effect.provide(logs.layer))
        expect(applied.length).toBeLessThanOrEqual(2)
        expect([...applied].sort((a, b) => a - b)).toEqual(applied)
        expect(stats.accepted).toBe(2 + applied.length)
        expect(stats.dropped.superseded).toBe(30 - applied.length)
        const bursts = logs.lines.filter((l) => l.includes("arrived together"))
        expect(bursts).toHaveLength(1)
        expect(bursts[0]).toMatch(/\d+ actions from .* arrived together/)
      }))

    it.live("singleController: another client's actions are refused and counted, its observations served", () =>
      Effect.gen(function*() {
        const { recorder, server } = yield* Pair.startRobotWith({ singleController: true, coalesceActions: false })
        const first = yield* ClientTransport.use((t) => t.connect)
        const second = yield* ClientTransport.use((t) => t.connect)
        yield* first.send(action(1))
        expect(yield* takeApplied(recorder, 1)).toEqual([1])
        yield* second.send(action(2))
        yield* second.send(action(3))
        yield* second.send(Frames.obsRequest)
        const reply = yield* second.frames.pipe(Stream.take(1), Stream.runCollect)
        expect(decodeType(reply[0]!)).toBe("obs_response")
        yield* eventually(Effect.map(server.actionStats, (s: ActionStats) => s.dropped.notController === 2))
        yield* first.send(action(4))
        expect(yield* takeApplied(recorder, 1)).toEqual([4])
        expect((yield* server.controller)?.peer).toMatch(/^127\.0\.0\.1:\d+$/)
      }).pipe(Effect.scoped, Effect.provide(transport.transports)))
  })

  describe(`connection logs and hooks over ${transport.name}`, () => {
    it.live("each connection opening and closing is logged with the peer's address; onConnect/onDisconnect get it", () =>
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
        }).pipe(Effect.scoped, Effect.provide(transport.transports), Effect.provide(logs.layer))
        const [connected, disconnected] = yield* Ref.get(events)
        expect(connected!.peer).toMatch(/^127\.0\.0\.1:\d+$/)
        expect(connected!.id).toContain(connected!.peer)
        expect(connected!.id).toMatch(transport.connectionId)
        expect(disconnected).toEqual(connected)
        expect(logs.lines.some((l) => l.startsWith("Info") && l.includes(`connection opened: ${connected!.id}`))).toBe(true)
        expect(logs.lines.some((l) => l.includes(`connection closed: ${connected!.id} (1 actions applied, 0 refused)`))).toBe(
          true
        )
      }))
  })
}
