// The action gate on virtual time (TestClock) over the in-memory transport:
// validation, the stale-action guard, single controller, the watchdog, the
// connection hooks and the action stats. Each refused action is followed by
// an accepted one on the same connection, whose arrival at the handler proves
// the refused ones were processed (a connection's actions are handled in order).
import { decodeFrame, encodeFrame, type ObsTimestamps } from "@chiral/protocol"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue, Ref, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import {
  type ActionTimeout,
  ClientTransport,
  type ConnectionInfo,
  type Connection,
  type Handlers,
  MemoryTransport,
  PolicyServer
} from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import * as Robot from "@chiral/testing/Robot"

const action = (values: ReadonlyArray<number>, obsTimestamps: ObsTimestamps = {}, shape = [values.length]) =>
  encodeFrame({
    type: "apply_action",
    action: { dtype: "float32", shape, data: Float32Array.from(values) },
    obsTimestamps
  })

const step = (values: ReadonlyArray<number>, obsTimestamps: ObsTimestamps = {}) =>
  encodeFrame({
    type: "action",
    action: { dtype: "float32", shape: [1, values.length], data: Float32Array.from(values) },
    obsTimestamps
  })

const nonFiniteFrame = new Uint8Array(
  fs.readFileSync(new URL("../../protocol/test/fixtures/field/apply_action_nonfinite.bin", import.meta.url))
)

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/**
 * A test robot with `config`, a recorder, and a way to open raw connections
 * to it. These tests judge each action of a run sent at once, so the server
 * applies every action as read (`coalesceActions: false`) unless a test says
 * otherwise; coalescing has tests of its own.
 */
const start = (
  config: Partial<Omit<PolicyServer.PolicyServerConfig<never, PolicyServer.PolicyServer>, "handlers">> & {
    readonly hooks?: Partial<Handlers<never, PolicyServer.PolicyServer>>
  } = {}
) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions: false,
      ...config,
      handlers: { ...Robot.handlers(recorder), ...config.hooks }
    })
    const connect = ClientTransport.use((t) => t.connect)
    const received: Array<number> = []
    /** The first value of each action the handler received since the last call. */
    const applied = Effect.sync(() => received.splice(0))
    /** Sends `frames`, then `sentinel` (an action that is accepted), and waits until the handler has it. */
    const sendThrough = (connection: Connection, frames: ReadonlyArray<Uint8Array>, sentinel: Uint8Array) =>
      Effect.gen(function*() {
        const decoded = decodeFrame(sentinel)
        if (Result.isFailure(decoded) || decoded.success.type !== "apply_action") return yield* Effect.die("bad sentinel")
        const want = decoded.success.action.data[0]
        for (const frame of frames) yield* connection.send(frame)
        yield* connection.send(sentinel)
        while (true) {
          const value = (yield* Queue.take(recorder.actions)).action.data[0] as number
          received.push(value)
          if (value === want) return
        }
      })
    return { recorder, server, connect, applied, sendThrough }
  })

const withLogs = <A, E, R>(body: (lines: Array<string>) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const logs = yield* Robot.captureLogs
    return yield* body(logs.lines).pipe(Effect.provide(logs.layer))
  })

const memory = MemoryTransport.layer()

/** Lets every runnable fiber run (transport, server, watchdog). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/** Runs fibers until `check` holds (bounded); for what happens when a connection's end is noticed. */
const until = (check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000 && !(yield* check); i++) yield* Effect.yieldNow
  })

/**
 * Client 1 connects and has a metadata request answered; client 2 connects
 * and gets nothing (its onConnect refuses it); then both go.
 */
const answeredThenRefused = <E, R>(connect: Effect.Effect<Connection, E, R>) =>
  Effect.scoped(Effect.gen(function*() {
    const a = yield* connect
    yield* a.send(encodeFrame({ type: "metadata" }))
    yield* a.frames.pipe(Stream.take(1), Stream.runDrain)
    const refused = yield* connect
    expect((yield* refused.frames.pipe(Stream.runCollect)).length).toBe(0)
  }))

describe("ActionGate: stale-action guard", () => {
  it.effect("actions older than maxActionAge are dropped before the handler, counted, and logged once per burst", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough, server } = yield* start({ maxActionAge: "500 millis" })
        yield* TestClock.adjust(1000)
        yield* server.updateImage("wrist", new Uint8Array(72))
        const client = yield* connect
        yield* sendThrough(client, [], action(row(1), { wrist: 1 }))
        // the robot keeps the same frame; 600 ms later, actions computed from it are stale
        yield* TestClock.adjust(600)
        const stale = [2, 3, 4, 5, 6].map((v) => action(row(v), { wrist: 1 }))
        yield* sendThrough(client, stale, action(row(7), { wrist: 1, scene: 1.6 }))
        expect(yield* applied).toEqual([1, 7])
        const stats = yield* server.actionStats
        expect(stats.accepted).toBe(2)
        expect(stats.dropped).toEqual({ stale: 5, invalid: 0, notController: 0, superseded: 0, disconnected: 0 })
        // one line when the burst starts, one with its count when it ends
        const refused = lines.filter((l) => l.includes("refused a stale action"))
        expect(refused.length).toBe(1)
        expect(refused[0]).toContain("0.6 s old, more than maxActionAge 0.5 s")
        expect(lines.filter((l) => l.includes("5 stale actions from") && l.includes("dropped in a row")).length).toBe(1)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("the newest timestamp decides; unstamped actions are accepted unless unstampedActions is drop; stamps from the future or non-finite are refused", () =>
    Effect.gen(function*() {
      const accepting = yield* start({ maxActionAge: "100 millis" })
      yield* TestClock.adjust(1000)
      const a = yield* accepting.connect
      const frames = [
        action(row(1), { wrist: 0.5, scene: 0.95 }), // newest 50 ms old: fresh
        action(row(2), { wrist: 0.5, scene: 0.85 }), // newest 150 ms old: stale
        action(row(3), { wrist: 1.5 }), // from the future: not this clock
        action(row(4), { wrist: Number.NaN }),
        action(row(5), {})
      ]
      yield* accepting.sendThrough(a, frames, action(row(6), { wrist: 1 }))
      expect(yield* accepting.applied).toEqual([1, 5, 6])
      const stats = yield* accepting.server.actionStats
      expect(stats.dropped).toEqual({ stale: 2, invalid: 1, notController: 0, superseded: 0, disconnected: 0 })
      expect(stats.unstamped).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("an action stamped older than any frame of that camera the robot gave (a client from before a restart) is refused, with or without maxActionAge; a stamp of 0 is not judged so", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        // the robot before the restart ran until 5 s; this one's wrist camera has its first frame at 6 s
        yield* TestClock.adjust(5000)
        const { applied, connect, sendThrough, server } = yield* start()
        yield* TestClock.adjust(1000)
        yield* server.updateImage("wrist", new Uint8Array(72))
        const client = yield* connect
        const frames = [
          action(row(1), { wrist: 4.9 }), // the robot before the restart's frame: refused
          action(row(2), { wrist: 4.9, scene: 0 }), // a camera without a frame does not make it newer
          action(row(3), { wrist: 0 }), // no frame at all: unstamped, as before
          action(row(4), { scene: 4.9 }) // a camera it has given nothing of yet: judged by the server's start
        ]
        yield* sendThrough(client, frames, action(row(5), { wrist: 6 }))
        expect(yield* applied).toEqual([3, 5])
        expect((yield* server.actionStats).dropped.stale).toBe(3)
        const refused = lines.filter((l) => l.includes("refused a stale action"))
        expect(refused[0]).toContain(
          "obs_timestamps.wrist is 1.1 s older than any frame of it this robot gave: an observation of another robot process's (from before a restart)"
        )
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("stamps under names that are not the robot's cameras do not count in an action's age; logged once per connection", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough, server } = yield* start({ maxActionAge: "100 millis" })
        yield* TestClock.adjust(1000)
        const client = yield* connect
        const frames = [
          // the wrist image is 500 ms old; a client's own clock says "now" under another name
          action(row(1), { wrist: 0.5, t: 1 }),
          // no camera of this robot named: no age
          action(row(2), { t: 1, cam_9: 1 })
        ]
        yield* sendThrough(client, frames, action(row(3), { wrist: 1 }))
        expect(yield* applied).toEqual([2, 3])
        const stats = yield* server.actionStats
        expect(stats.dropped.stale).toBe(1)
        expect(stats.unstamped).toBe(1)
        const named = lines.filter((l) => l.includes("not a camera of this robot"))
        expect(named).toHaveLength(1)
        expect(named[0]).toContain(`stamps its actions with "t", not a camera of this robot (wrist, scene)`)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a server that declares no cameras (chiral replay) has no clock to judge stamps by: actions count as unstamped, and nothing is said of their names", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough, server } = yield* start({ cameras: [], maxActionAge: "100 millis" })
        yield* TestClock.adjust(1000)
        const client = yield* connect
        // another robot's capture times: 0.5 s would be stale here, 1e9 in the future
        yield* sendThrough(client, [action(row(1), { cam_0: 0.5 })], action(row(2), { cam_0: 1e9 }))
        expect(yield* applied).toEqual([1, 2])
        const stats = yield* server.actionStats
        expect(stats.dropped.stale).toBe(0)
        expect(stats.unstamped).toBe(2)
        expect(lines.filter((l) => l.includes("not a camera of this robot"))).toEqual([])
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("unstampedActions: drop refuses actions that carry no timestamps", () =>
    Effect.gen(function*() {
      const { applied, connect, sendThrough, server } = yield* start({ maxActionAge: "1 second", unstampedActions: "drop" })
      const client = yield* connect
      yield* sendThrough(client, [action(row(1), {})], action(row(2), { wrist: 0 }))
      expect(yield* applied).toEqual([2])
      expect((yield* server.actionStats).dropped.stale).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a refused legacy step closes that connection (its only reply would say it was applied)", () =>
    Effect.gen(function*() {
      const { applied, connect, sendThrough, server } = yield* start({ maxActionAge: "100 millis" })
      yield* TestClock.adjust(1000)
      const client = yield* connect
      yield* client.send(step(row(1), { wrist: 0 }))
      // the server ends the connection: the client's frames end without a reply
      const replies = yield* client.frames.pipe(Stream.runCollect)
      expect(replies.length).toBe(0)
      expect((yield* server.actionStats).dropped.stale).toBe(1)
      const other = yield* connect
      yield* sendThrough(other, [], action(row(2), { wrist: 1 }))
      expect(yield* applied).toEqual([2])
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: validation", () => {
  it.effect("NaN and ±Inf never reach the handler, with or without a spec (the field frame included)", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough, server } = yield* start()
        const client = yield* connect
        const frames = [
          nonFiniteFrame,
          action([1, Number.POSITIVE_INFINITY]),
          action([Number.NEGATIVE_INFINITY]),
          encodeFrame({
            type: "apply_action",
            action: { dtype: "float16", shape: [2], data: Uint16Array.of(0x3c00, 0x7e00) }, // [1, NaN]
            obsTimestamps: {}
          })
        ]
        yield* sendThrough(client, frames, action([9, -0, 3.4e38]))
        expect(yield* applied).toEqual([9])
        expect((yield* server.actionStats).dropped.invalid).toBe(4)
        const refused = lines.filter((l) => l.includes("refused an invalid action"))
        expect(refused.length).toBe(1)
        expect(refused[0]).toContain("element 0 is NaN")
        expect(lines.some((l) => l.includes("4 invalid actions from") && l.includes("dropped in a row"))).toBe(true)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("with an actionSpec, the shape and per-joint bounds are checked", () =>
    Effect.gen(function*() {
      const { applied, connect, sendThrough, server } = yield* start({
        actionSpec: { dim: 3, lower: [-1, -1, 0], upper: [1, 1, 0.5] }
      })
      const client = yield* connect
      const frames = [
        action([0.1, 0, 0, 0]), // 4 values
        action([0.2, 0], {}, [2]),
        action([0.3, 0, 0, 0, 0, 0], {}, [3, 2]), // [3, 2]: D is 2
        action([0.4, 0, 0.6]), // joint 2 above 0.5
        action([0.5, -2, 0]), // joint 1 below -1
        action([0.6, 0, 0, 0.7, 0, 0.7], {}, [2, 3]) // row 1 joint 2
      ]
      yield* sendThrough(client, frames, action([0.9, 0, 0.5], {}, [1, 3]))
      yield* sendThrough(client, [], action([0.8, 1, 0, 0.1, -1, 0], {}, [2, 3]))
      expect((yield* applied).map((v) => Math.round(v * 10) / 10)).toEqual([0.9, 0.8])
      expect((yield* server.actionStats).dropped.invalid).toBe(6)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("with maxRows, an action of more rows than the robot's N is refused as invalid", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough, server } = yield* start({ actionSpec: { dim: 2, maxRows: 1 } })
        const client = yield* connect
        yield* sendThrough(client, [action([0.1, 0, 0.2, 0], {}, [2, 2])], action([0.3, 0], {}, [1, 2]))
        expect(yield* applied).toEqual([Math.fround(0.3)])
        expect((yield* server.actionStats).dropped.invalid).toBe(1)
        expect(lines.some((l) => l.includes("shape [2, 2]: 2 rows, at most 1 (the robot's action_shape [1, 2])"))).toBe(true)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a spec or durations that cannot work are a ConfigError", () =>
    Effect.gen(function*() {
      const build = (config: Partial<PolicyServer.PolicyServerConfig>) =>
        PolicyServer.make({ handlers: { reset: Effect.die("unused"), applyAction: () => Effect.void }, ...config }).pipe(
          Effect.scoped,
          Effect.provide(MemoryTransport.layer()),
          Effect.exit
        )
      expect(failure(yield* build({ actionSpec: { dim: 0 } })).message).toContain("dim 0")
      expect(failure(yield* build({ actionSpec: { dim: 2, maxRows: 0 } })).message).toContain("maxRows 0")
      expect(failure(yield* build({ actionSpec: { dim: 2, lower: [0] } })).message).toContain("lower has 1 values")
      expect(failure(yield* build({ actionSpec: { dim: 1, lower: [1], upper: [0] } })).message).toContain("above upper[0]")
      expect(failure(yield* build({ maxActionAge: -1 })).message).toContain("maxActionAge")
      expect(failure(yield* build({ actionTimeout: 0 })).message).toContain("actionTimeout")
    }))
})

describe("ActionGate: single controller", () => {
  it.effect("the first client to act has control until it leaves; others are refused and counted but still observe", () =>
    Effect.gen(function*() {
      const { applied, connect, sendThrough, server } = yield* start({ singleController: true })
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* connect
        const b = yield* connect
        yield* sendThrough(a, [], action(row(1)))
        expect((yield* server.controller)?.id).toContain("client 1")
        // b's actions are refused; its requests are answered
        yield* b.send(action(row(2)))
        yield* b.send(encodeFrame({ type: "obs_request" }))
        const reply = yield* b.frames.pipe(Stream.take(1), Stream.runCollect)
        expect(reply.length).toBe(1)
        yield* sendThrough(a, [], action(row(3)))
        expect(yield* applied).toEqual([1, 3])
        expect((yield* server.actionStats).dropped.notController).toBe(1)
        return yield* server.controller
      }))
      expect(first?.peer).toBe("client 1")
      // control is released with the connection: the next client to act takes it
      yield* until(Effect.map(server.controller, (c) => c === undefined))
      const c = yield* connect
      yield* sendThrough(c, [], action(row(4)))
      expect(yield* applied).toEqual([4])
      expect((yield* server.controller)?.peer).toBe("client 3")
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: single controller and resets", () => {
  it.effect("a client without control cannot reset the robot: refused, logged, its connection closed; the controller's reset is done and logged", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { connect, recorder, sendThrough, server } = yield* start({ singleController: true })
        const reset = encodeFrame({ type: "reset" })
        const a = yield* connect
        const b = yield* connect
        yield* sendThrough(a, [], action(row(1)))
        expect((yield* server.controller)?.peer).toBe("client 1")
        // b's reset would move the robot under a's policy: the server ends b's connection without a reply
        yield* b.send(reset)
        const replies = yield* b.frames.pipe(Stream.runCollect)
        expect(replies.length).toBe(0)
        expect(yield* Ref.get(recorder.resets)).toBe(0)
        expect(lines.some((l) => l.includes("refused a reset from memory://chiral ← client 2: memory://chiral ← client 1 has control of the robot"))).toBe(true)
        expect(lines.some((l) => l.includes("closing memory://chiral ← client 2: its reset was refused"))).toBe(true)
        // the controller's own reset is done, with a line when asked for and when done
        yield* a.send(reset)
        const answer = yield* a.frames.pipe(Stream.take(1), Stream.runCollect)
        expect(answer.length).toBe(1)
        expect(yield* Ref.get(recorder.resets)).toBe(1)
        expect(lines.some((l) => l.includes("reset asked for by memory://chiral ← client 1"))).toBe(true)
        expect(lines.some((l) => /reset for memory:\/\/chiral ← client 1 done in \d+\.\d\d s/.test(l))).toBe(true)
        // nothing was counted as a refused action
        expect((yield* server.actionStats).dropped.notController).toBe(0)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("without a single controller, two clients acting at once are said once per connection; one after the other, or a client that reconnected, are not", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { applied, connect, sendThrough } = yield* start()
        const together = () => lines.filter((l) => l.includes("their actions interleave on the robot"))
        const a = yield* connect
        const b = yield* connect
        yield* sendThrough(a, [], action(row(1)))
        yield* TestClock.adjust(2000)
        // b acts 2 s after a: one after the other
        yield* sendThrough(b, [], action(row(2)))
        expect(together()).toEqual([])
        yield* TestClock.adjust(500)
        yield* sendThrough(a, [], action(row(3)))
        expect(together()).toHaveLength(1)
        expect(together()[0]).toContain(
          "actions from memory://chiral ← client 1 are being applied while memory://chiral ← client 2's are"
        )
        yield* sendThrough(b, [], action(row(4)))
        yield* sendThrough(a, [], action(row(5)))
        expect(together()).toHaveLength(2) // b's turn, once; a is not said again
        expect(yield* applied).toEqual([1, 2, 3, 4, 5])
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a client that reconnects and acts at once is not said to act beside its earlier connection", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { connect, sendThrough } = yield* start()
        yield* Effect.scoped(Effect.gen(function*() {
          const a = yield* connect
          yield* sendThrough(a, [], action(row(1)))
        }))
        // the server has seen the first connection end
        yield* until(Effect.sync(() => lines.some((l) => l.includes("connection closed: memory://chiral ← client 1"))))
        expect(lines.some((l) => l.includes("connection closed: memory://chiral ← client 1"))).toBe(true)
        const again = yield* connect
        yield* sendThrough(again, [], action(row(2)))
        expect(lines.filter((l) => l.includes("their actions interleave on the robot"))).toEqual([])
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("with no client in control, any client may reset", () =>
    Effect.gen(function*() {
      const { connect, recorder } = yield* start({ singleController: true })
      const b = yield* connect
      yield* b.send(encodeFrame({ type: "reset" }))
      expect((yield* b.frames.pipe(Stream.take(1), Stream.runCollect)).length).toBe(1)
      expect(yield* Ref.get(recorder.resets)).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: single controller and the watchdog", () => {
  it.effect("a controller silent for actionTimeout loses control: another client (a policy that reconnected) takes it", () =>
    Effect.gen(function*() {
      const { applied, connect, sendThrough, server } = yield* start({ singleController: true, actionTimeout: "200 millis" })
      // a's connection stays open (as a half-open one would) but it stops acting
      const a = yield* connect
      const b = yield* connect
      yield* sendThrough(a, [], action(row(1)))
      expect((yield* server.controller)?.peer).toBe("client 1")
      yield* TestClock.adjust(150)
      yield* b.send(action(row(2)))
      yield* TestClock.adjust(100)
      yield* until(Effect.map(server.controller, (c) => c === undefined))
      yield* sendThrough(b, [], action(row(3)))
      expect((yield* server.controller)?.peer).toBe("client 2")
      yield* a.send(action(row(4)))
      yield* until(Effect.map(server.actionStats, (s) => s.dropped.notController === 2))
      expect(yield* applied).toEqual([1, 3])
    }).pipe(Effect.scoped, Effect.provide(memory)))
  it.effect("the controller's reset, longer than actionTimeout, is activity: no hold in its middle, control kept, another client still refused", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const holds = yield* Ref.make(0)
        const resetting = yield* Deferred.make<void>()
        const { applied, connect, sendThrough, server } = yield* start({
          singleController: true,
          actionTimeout: "500 millis",
          hooks: {
            reset: Effect.andThen(
              Effect.andThen(Deferred.succeed(resetting, undefined), Effect.sleep(3000)),
              Effect.map(PolicyServer.makeObs(), (obs) => ({ obs }))
            ),
            onActionTimeout: () => Ref.update(holds, (n) => n + 1)
          }
        })
        const a = yield* connect
        const b = yield* connect
        yield* sendThrough(a, [], action(row(1)))
        yield* a.send(encodeFrame({ type: "reset" }))
        yield* Deferred.await(resetting)
        yield* TestClock.adjust(1000)
        // a is still resetting: it keeps control, b's action is refused
        yield* b.send(action(row(2)))
        yield* until(Effect.map(server.actionStats, (s) => s.dropped.notController === 1))
        expect((yield* server.controller)?.peer).toBe("client 1")
        expect(yield* Ref.get(holds)).toBe(0)
        yield* TestClock.adjust(2000)
        expect((yield* a.frames.pipe(Stream.take(1), Stream.runCollect)).length).toBe(1)
        // the countdown restarts when the reset ends
        yield* TestClock.adjust(400)
        yield* sendThrough(a, [], action(row(3)))
        expect(yield* applied).toEqual([1, 3])
        expect(yield* Ref.get(holds)).toBe(0)
        expect(lines.some((l) => l.includes("lost control"))).toBe(false)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a reset before any action does not arm the watchdog", () =>
    Effect.gen(function*() {
      const holds = yield* Ref.make(0)
      const { connect } = yield* start({ actionTimeout: "200 millis", hooks: { onActionTimeout: () => Ref.update(holds, (n) => n + 1) } })
      const a = yield* connect
      yield* a.send(encodeFrame({ type: "reset" }))
      expect((yield* a.frames.pipe(Stream.take(1), Stream.runCollect)).length).toBe(1)
      yield* TestClock.adjust(1000)
      yield* settle
      expect(yield* Ref.get(holds)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: watchdog and connection hooks", () => {
  it.effect("a gap of actionTimeout after actions runs onActionTimeout once per gap; the next action re-arms it", () =>
    Effect.gen(function*() {
      const timeouts = yield* Ref.make<ReadonlyArray<ActionTimeout>>([])
      const { connect, sendThrough } = yield* start({
        actionTimeout: "200 millis",
        hooks: { onActionTimeout: (event) => Ref.update(timeouts, (list) => [...list, event]) }
      })
      // never armed: no actions yet
      yield* TestClock.adjust(1000)
      expect(yield* Ref.get(timeouts)).toEqual([])
      const client = yield* connect
      yield* sendThrough(client, [], action(row(1)))
      yield* TestClock.adjust(150)
      yield* sendThrough(client, [], action(row(2)))
      yield* TestClock.adjust(199)
      yield* settle
      expect(yield* Ref.get(timeouts)).toEqual([])
      yield* TestClock.adjust(1)
      yield* settle
      const fired = yield* Ref.get(timeouts)
      expect(fired.length).toBe(1)
      expect(fired[0]!.last.peer).toBe("client 1")
      expect(fired[0]!.silentMillis).toBe(200)
      // once per gap
      yield* TestClock.adjust(5000)
      yield* settle
      expect((yield* Ref.get(timeouts)).length).toBe(1)
      yield* sendThrough(client, [], action(row(3)))
      yield* TestClock.adjust(200)
      yield* settle
      expect((yield* Ref.get(timeouts)).length).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a handler slower than actionTimeout is activity: no hold while it runs; the gap counts from its end", () =>
    Effect.gen(function*() {
      const timeouts = yield* Ref.make(0)
      const applying = yield* Ref.make(0)
      const { connect } = yield* start({
        actionTimeout: "200 millis",
        hooks: {
          // the arm takes 250 ms to carry out each command
          applyAction: () => Effect.andThen(Ref.update(applying, (n) => n + 1), Effect.sleep(250)),
          onActionTimeout: () => Ref.update(timeouts, (n) => n + 1)
        }
      })
      const client = yield* connect
      yield* client.send(action(row(1)))
      yield* until(Effect.map(Ref.get(applying), (n) => n === 1))
      yield* TestClock.adjust(249)
      yield* settle
      expect(yield* Ref.get(timeouts)).toBe(0)
      // the command ends at 250 ms; 199 ms of silence after it is not yet a gap
      yield* TestClock.adjust(200)
      yield* settle
      expect(yield* Ref.get(timeouts)).toBe(0)
      yield* TestClock.adjust(1)
      yield* settle
      expect(yield* Ref.get(timeouts)).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("an onActionTimeout that throws instead of failing: the gap is still said and control lapses; the throw is logged; the next gap fires again", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        let calls = 0
        const { connect, sendThrough, server } = yield* start({
          singleController: true,
          actionTimeout: "200 millis",
          hooks: {
            onActionTimeout: () => {
              calls++
              throw new Error("hold failed")
            }
          }
        })
        const a = yield* connect
        yield* sendThrough(a, [], action(row(1)))
        yield* TestClock.adjust(200)
        yield* until(Effect.sync(() => calls === 1))
        expect(lines.some((l) => l.includes("no action for 200ms"))).toBe(true)
        expect(lines.some((l) => l.includes("lost control of the robot"))).toBe(true)
        expect(lines.some((l) => l.includes("onActionTimeout failed"))).toBe(true)
        expect(yield* server.controller).toBeUndefined()
        yield* sendThrough(a, [], action(row(2)))
        yield* TestClock.adjust(200)
        yield* until(Effect.sync(() => calls === 2))
        expect(calls).toBe(2)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("refused actions do not feed the watchdog", () =>
    Effect.gen(function*() {
      const fired = yield* Ref.make(0)
      const { connect, sendThrough } = yield* start({
        actionTimeout: "200 millis",
        hooks: { onActionTimeout: () => Ref.update(fired, (n) => n + 1) }
      })
      const client = yield* connect
      yield* sendThrough(client, [], action(row(1)))
      yield* TestClock.adjust(150)
      // a NaN at 150 ms does not count as an action
      yield* sendThrough(client, [action([Number.NaN])], action(row(2)))
      yield* TestClock.adjust(200)
      yield* settle
      expect(yield* Ref.get(fired)).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("onConnect and onDisconnect see the connection id and peer; an onConnect failure refuses the connection", () =>
    Effect.gen(function*() {
      const events = yield* Ref.make<ReadonlyArray<string>>([])
      const note = (what: string) => (info: ConnectionInfo) => Ref.update(events, (list) => [...list, `${what} ${info.peer} ${info.id}`])
      const { connect } = yield* start({
        hooks: {
          onConnect: (info) => info.peer === "client 2" ? Effect.die("not on the allow list") : note("connect")(info),
          onDisconnect: note("disconnect")
        }
      })
      yield* answeredThenRefused(connect)
      // the server sees a's end once its reader notices
      yield* until(Effect.map(Ref.get(events), (list) => list.length >= 2))
      expect(yield* Ref.get(events)).toEqual([
        "connect client 1 memory://chiral ← client 1",
        "disconnect client 1 memory://chiral ← client 1"
      ])
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("hooks that throw instead of failing: onConnect's throw refuses the client as a failure does, onDisconnect's is logged", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { connect } = yield* start({
          hooks: {
            onConnect: (info) => {
              if (info.peer === "client 2") throw new Error("not on the allow list")
              return Effect.void
            },
            onDisconnect: () => {
              throw new Error("logger gone")
            }
          }
        })
        yield* answeredThenRefused(connect)
        yield* until(Effect.sync(() => lines.some((l) => l.includes("onDisconnect failed for memory://chiral ← client 1"))))
        expect(lines.some((l) => l.includes("onDisconnect failed for memory://chiral ← client 1"))).toBe(true)
        expect(lines.some((l) => l.includes("refused") && l.includes("not on the allow list"))).toBe(true)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("an onConnect that has not returned after 5 s is said (the client's frames wait for it), and so is its return; a prompt one says nothing", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const slow = yield* Deferred.make<void>()
        let connections = 0
        const { connect } = yield* start({ hooks: { onConnect: () => ++connections === 1 ? Deferred.await(slow) : Effect.void } })
        const waiting = yield* connect
        yield* waiting.send(encodeFrame({ type: "metadata" }))
        yield* TestClock.adjust("4999 millis")
        yield* settle
        expect(lines.filter((l) => l.includes("onConnect"))).toEqual([])
        yield* TestClock.adjust("1 millis")
        yield* until(Effect.sync(() => lines.some((l) => l.includes("onConnect has not returned"))))
        expect(lines.filter((l) => l.includes("onConnect"))).toEqual([
          "Warn: chiral: onConnect has not returned for memory://chiral ← client 1 after 5s: none of its frames is read until it does (its requests wait, and its actions)"
        ])
        yield* TestClock.adjust("2500 millis")
        yield* Deferred.succeed(slow, undefined)
        expect((yield* waiting.frames.pipe(Stream.take(1), Stream.runCollect)).length).toBe(1)
        expect(lines.filter((l) => l.includes("onConnect returned"))).toEqual([
          "Info: chiral: onConnect returned for memory://chiral ← client 1 after 7.5 s"
        ])
        const prompt = yield* connect
        yield* prompt.send(encodeFrame({ type: "metadata" }))
        yield* prompt.frames.pipe(Stream.take(1), Stream.runDrain)
        yield* TestClock.adjust("10 seconds")
        yield* settle
        expect(lines.filter((l) => l.includes("onConnect")).length).toBe(2)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: stats", () => {
  it.effect("an applyAction that fails or throws is counted as failed, not as applied", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          coalesceActions: false,
          handlers: {
            ...Robot.handlers(recorder),
            applyAction: (a, context) => {
              if (a.data[0] === 2) return Effect.fail("joint 3 over-current")
              if (a.data[0] === 3) return Effect.sync(() => { throw new Error("driver exploded") })
              return Robot.handlers(recorder).applyAction(a, context)
            }
          }
        })
        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* ClientTransport.use((t) => t.connect)
          for (const v of [1, 2, 3, 4]) yield* client.send(action(row(v)))
          yield* Queue.take(recorder.actions)
          yield* Queue.take(recorder.actions)
        }))
        yield* until(Effect.map(server.connections, (n) => n === 0))
        const stats = yield* server.actionStats
        expect(stats.accepted).toBe(4)
        expect(stats.failed).toBe(2)
        expect(lines.filter((l) => l.includes("applyAction failed for"))).toHaveLength(2)
        expect(lines.some((l) => l.includes("(2 actions applied, 0 refused, 2 failed in applyAction)"))).toBe(true)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("actionStats gives counts and the age of accepted actions' observations (ms)", () =>
    Effect.gen(function*() {
      const { connect, sendThrough, server } = yield* start()
      expect((yield* server.actionStats).ageMillis).toBeUndefined()
      yield* TestClock.adjust(10_000)
      const client = yield* connect
      // ages 0, 10, 20, … 990 ms (100 actions), then one unstamped
      const frames = Array.from({ length: 99 }, (_, i) => action(row(i), { wrist: 10 - (i * 10) / 1000 }))
      yield* sendThrough(client, frames, action(row(99), { wrist: 10 - 0.99 }))
      yield* sendThrough(client, [], action(row(100)))
      const stats = yield* server.actionStats
      expect(stats.accepted).toBe(101)
      expect(stats.unstamped).toBe(1)
      expect(stats.ageMillis!.count).toBe(100)
      expect(stats.ageMillis!.p50).toBeCloseTo(500, 6)
      expect(stats.ageMillis!.p99).toBeCloseTo(990, 6)
      expect(stats.ageMillis!.max).toBeCloseTo(990, 6)
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ActionGate: the restart rule before the new process has given any frame", () => {
  it.effect("a client from before a restart steps on at once, before this robot's camera has a frame: its stamps were never this server's (Stale)", () =>
    Effect.gen(function*() {
      // the robot before the restart ran until 5 s; this one starts then, its camera not streaming yet
      yield* TestClock.adjust(5000)
      const { applied, connect, sendThrough, server } = yield* start()
      yield* TestClock.adjust(200)
      const client = yield* connect
      // a C++ reference client reconnects by itself and steps on with the old robot's stamps
      yield* sendThrough(client, [action(row(1), { wrist: 4.9 })], action(row(2), {}))
      expect(yield* applied).toEqual([2])
      expect((yield* server.actionStats).dropped.stale).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))
})

describe("ServerConnection: a reply whose observation cannot be encoded", () => {
  it.effect("getObs returning a malformed observation (no cameras): the connection is closed as unanswerable (encoding), not a defect", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const { connect } = yield* start({ hooks: { getObs: Effect.succeed({ timestamp: 1 } as never) } })
        const client = yield* connect
        yield* client.send(encodeFrame({ type: "obs_request" }))
        yield* TestClock.adjust(100)
        yield* settle
        yield* TestClock.adjust(100)
        yield* settle
        expect(lines.some((l) => l.includes("cannot answer obs_request"))).toBe(true)
        expect(lines.some((l) => l.includes("connection ended TypeError"))).toBe(false)
      })
    ).pipe(Effect.scoped, Effect.provide(memory)))
})
