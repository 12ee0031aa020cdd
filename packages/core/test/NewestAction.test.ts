// Actions that arrive together: only the newest reaches the robot, the older
// ones are dropped as superseded (counted, logged), and a request keeps its
// place after the actions sent before it. On virtual time (TestClock) over
// the in-memory transport; sends in a row with no wait between them arrive
// together, as a frozen server's socket hands them over. The cap on waiting
// for a reader that is catching up is tested on the slot itself, with a
// reader that never catches up (a connection's reader turns end after 16
// frames or 1 ms, so through a connection the count depends on the machine).
import { decodeFrame, encodeFrame, type Observation, Tensor } from "@chiral/protocol"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Queue, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ClientTransport, MemoryTransport, PolicyServer } from "../src/index.js"
import * as CameraState from "../src/CameraState.js"
import * as NewestAction from "../src/NewestAction.js"
import * as Robot from "@chiral/testing/Robot"

const action = (value: number, obsTimestamps: Record<string, number> = {}) =>
  encodeFrame({
    type: "apply_action",
    action: { dtype: "float32", shape: [7], data: Float32Array.of(value, 0, 0, 0, 0, 0, 0) },
    obsTimestamps
  })

const obsRequest = encodeFrame({ type: "obs_request" })

const memory = MemoryTransport.layer()

/** The test robot (handlers record), with `coalesceActions` and `maxActionAge` as given. */
const start = (coalesceActions?: boolean, maxActionAge?: PolicyServer.PolicyServerConfig<never, never>["maxActionAge"]) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions,
      maxActionAge,
      handlers: Robot.handlers(recorder)
    })
    const client = yield* ClientTransport.use((t) => t.connect)
    /** First values of the next `n` actions the handler receives. */
    const applied = (n: number) =>
      Effect.map(Effect.replicateEffect(Queue.take(recorder.actions), n), (list) => list.map((a) => a.action.data[0]))
    return { recorder, server, client, applied }
  })

/**
 * A robot whose arm goes where each action says (after `moving`, the time it
 * takes) and reports it as joint_pos, which starts at 0.
 */
const armRobot = (moving: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      handlers: {
        reset: Effect.die("unused"),
        applyAction: (a) =>
          Effect.andThen(
            moving,
            Effect.flatMap(PolicyServer.PolicyServer, (s) => s.updateProprio("joint_pos", Float32Array.from(Tensor.toArray(a))))
          )
      }
    })
    yield* server.updateProprio("joint_pos", new Float32Array(7))
    return server
  })

const values = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

describe("NewestAction: actions that arrive together", () => {
  it.effect("only the newest of a burst is applied; the older are counted as superseded and logged in one line", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const stats = yield* Effect.gen(function*() {
        const { applied, client, recorder, server } = yield* start()
        yield* client.send(action(1))
        expect(yield* applied(1)).toEqual([1])
        // twenty ticks' actions waited in a frozen server's socket
        for (const v of values(100, 119)) yield* client.send(action(v))
        expect(yield* applied(1)).toEqual([119])
        // alone again: applied
        yield* client.send(action(2))
        expect(yield* applied(1)).toEqual([2])
        expect(yield* Queue.size(recorder.actions)).toBe(0)
        return yield* server.actionStats
      }).pipe(Effect.scoped, Effect.provide(memory), Effect.provide(logs.layer))
      expect(stats.accepted).toBe(3)
      expect(stats.dropped).toEqual({ stale: 0, invalid: 0, notController: 0, superseded: 19, disconnected: 0 })
      const bursts = logs.lines.filter((l) => l.includes("arrived together"))
      expect(bursts).toHaveLength(1)
      expect(bursts[0]).toContain("20 actions from memory://chiral ← client 1 arrived together")
      expect(bursts[0]).toContain("dropped the 19 older as superseded")
      expect(logs.lines.some((l) => l.includes("(3 actions applied, 0 refused, 19 superseded)"))).toBe(true)
    }))

  it.effect("the first burst's line says how old the kept action's observation is (by this robot's cameras), and whether maxActionAge judges it", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      // stamps (s) relative to the server's start: the capture clock reads 1.2 s after it when the actions arrive
      const burst = (maxActionAge: "2 seconds" | undefined, stamps: (started: number) => Record<string, number>) =>
        Effect.gen(function*() {
          const started = yield* CameraState.captureTime
          const { applied, client } = yield* start(undefined, maxActionAge)
          yield* TestClock.adjust(1200)
          for (const v of [1, 2, 3]) yield* client.send(action(v, stamps(started)))
          expect(yield* applied(1)).toEqual([3])
        }).pipe(Effect.scoped, Effect.provide(memory), Effect.provide(logs.layer))
      yield* TestClock.adjust(5000)
      // the kept action names a wrist image taken as the server started
      yield* burst(undefined, (t) => ({ wrist: t, t: t + 1.19 }))
      yield* burst("2 seconds", (t) => ({ wrist: t }))
      yield* burst(undefined, (t) => ({ t: t + 1.19 }))
      yield* burst(undefined, (t) => ({ wrist: t + 3.2 }))
      const lines = logs.lines.filter((l) => l.includes("arrived together"))
      expect(lines).toHaveLength(4)
      expect(lines[0]).toContain(
        "(held up on their way: this server, or something between it and the client, was stopped, blocked or busy); kept the newest, computed from an observation 1.20 s old (no maxActionAge: applied however old), dropped the 2 older"
      )
      expect(lines[1]).toContain("kept the newest, computed from an observation 1.20 s old (maxActionAge 2 s judges it)")
      expect(lines[2]).toContain("kept the newest, whose age cannot be told (no timestamps of this robot's cameras)")
      expect(lines[3]).toContain("kept the newest, stamped 2.00 s in the future (not this robot's capture clock)")
    }))

  it.effect("a burst longer than one turn of the reader (16 frames) still ends in one action", () =>
    Effect.gen(function*() {
      const { applied, client, recorder, server } = yield* start()
      for (const v of values(1000, 1099)) yield* client.send(action(v))
      expect(yield* applied(1)).toEqual([1099])
      expect((yield* server.actionStats).dropped.superseded).toBe(99)
      expect(yield* Queue.size(recorder.actions)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("coalesceActions: false applies every action as read, bursts included", () =>
    Effect.gen(function*() {
      const { applied, client, server } = yield* start(false)
      for (const v of values(100, 119)) yield* client.send(action(v))
      expect(yield* applied(20)).toEqual(values(100, 119))
      expect((yield* server.actionStats).dropped.superseded).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a request waits for the actions sent before it: the observation shows the robot after them", () =>
    Effect.gen(function*() {
      const server = yield* armRobot(Effect.void)
      const client = yield* ClientTransport.use((t) => t.connect)
      yield* client.send(action(3))
      yield* client.send(action(4))
      yield* client.send(obsRequest)
      const reply = yield* client.frames.pipe(Stream.take(1), Stream.runCollect)
      const decoded = decodeFrame(reply[0]!)
      if (Result.isFailure(decoded) || decoded.success.type !== "obs_response") return yield* Effect.die("no obs_response")
      const obs: Observation = decoded.success.obs
      expect(obs.proprios.find((p) => p.name === "joint_pos")!.data.data[0]).toBe(4)
      expect((yield* server.actionStats).dropped.superseded).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("while a slow handler applies one action, the next ones wait in the slot: only the newest follows it", () =>
    Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      const started = yield* Deferred.make<void>()
      const server = yield* PolicyServer.make({
        cameras: Robot.cameras,
        proprios: Robot.proprios,
        handlers: {
          ...Robot.handlers(recorder),
          // the arm's driver takes 200 ms to take a command
          applyAction: (a, context) =>
            Effect.andThen(
              Deferred.succeed(started, undefined),
              Effect.andThen(Effect.sleep(200), Robot.handlers(recorder).applyAction(a, context))
            )
        }
      })
      const client = yield* ClientTransport.use((t) => t.connect)
      yield* client.send(action(1))
      yield* Deferred.await(started)
      // three ticks at 10 Hz while the driver is busy, each sent on its own
      for (const v of [2, 3, 4]) {
        yield* client.send(action(v))
        yield* TestClock.adjust(50)
      }
      yield* TestClock.adjust(400)
      const applied = yield* Effect.replicateEffect(Queue.take(recorder.actions), 2)
      expect(applied.map((a) => a.action.data[0])).toEqual([1, 4])
      expect((yield* server.actionStats).dropped.superseded).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("a request that arrives while an action is being applied waits for it", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // the arm takes 200 ms to reach the action's target
      yield* armRobot(Effect.andThen(Deferred.succeed(started, undefined), Effect.sleep(200)))
      const client = yield* ClientTransport.use((t) => t.connect)
      yield* client.send(action(5))
      yield* Deferred.await(started)
      yield* client.send(obsRequest)
      const reply = yield* Effect.forkChild(client.frames.pipe(Stream.take(1), Stream.runCollect))
      yield* TestClock.adjust(200)
      const decoded = decodeFrame((yield* Fiber.join(reply))[0]!)
      if (Result.isFailure(decoded) || decoded.success.type !== "obs_response") return yield* Effect.die("no obs_response")
      expect(decoded.success.obs.proprios.find((p) => p.name === "joint_pos")!.data.data[0]).toBe(5)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("the last action before the client leaves is applied", () =>
    Effect.gen(function*() {
      const { recorder, server } = yield* start()
      yield* Effect.scoped(Effect.flatMap(ClientTransport.use((t) => t.connect), (leaving) => leaving.send(action(7))))
      expect((yield* Queue.take(recorder.actions)).action.data[0]).toBe(7)
      expect((yield* server.actionStats).dropped.disconnected).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("an applyAction interrupted from within counts as failed; the connection's next action is applied", () =>
    Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      const server = yield* PolicyServer.make({
        cameras: Robot.cameras,
        handlers: {
          ...Robot.handlers(recorder),
          applyAction: (a, context) => a.data[0] === 1 ? Effect.interrupt : Robot.handlers(recorder).applyAction(a, context)
        }
      })
      const client = yield* ClientTransport.use((t) => t.connect)
      yield* client.send(action(1))
      while ((yield* server.actionStats).failed < 1) yield* Effect.yieldNow
      yield* client.send(action(2))
      expect((yield* Queue.take(recorder.actions)).action.data[0]).toBe(2)
      expect((yield* server.actionStats).failed).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(memory)))

  it.effect("after the first burst, a connection's bursts are summed into one line per 10 s, said when the 10 s are up, and at its close", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const summed = () => logs.lines.filter((l) => l.includes("superseded") && !l.includes("connection closed"))
      yield* Effect.gen(function*() {
        const { applied, client } = yield* start()
        const burst = (first: number, n: number) =>
          Effect.gen(function*() {
            for (const v of values(first, first + n - 1)) yield* client.send(action(v))
            expect(yield* applied(1)).toEqual([first + n - 1])
          })
        yield* burst(10, 3) // logged at once
        yield* TestClock.adjust(4000)
        yield* burst(20, 2) // counted
        yield* TestClock.adjust(4000)
        yield* burst(30, 4) // counted
        yield* TestClock.adjust(1999)
        expect(summed()).toHaveLength(1)
        // 10 s after the first line, with no burst since: the two counted are said
        yield* TestClock.adjust(1)
        expect(summed()).toHaveLength(2)
        yield* TestClock.adjust(1000)
        yield* burst(40, 2) // counted
        yield* burst(50, 5) // counted, then said at the close
      }).pipe(Effect.scoped, Effect.provide(memory), Effect.provide(logs.layer))
      const lines = summed()
      expect(lines).toHaveLength(3)
      expect(lines[0]).toContain("3 actions from memory://chiral ← client 1 arrived together")
      expect(lines[1]).toContain("2 bursts of actions arriving together, 4 superseded from memory://chiral ← client 1 in the last 10 s")
      expect(lines[2]).toContain("2 bursts of actions arriving together, 5 superseded from memory://chiral ← client 1 before it closed")
    }))

  it.effect("bursts counted after a burst said the summary before its timer ran are still said within 10 s", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      const summed = () => logs.lines.filter((l) => l.includes("superseded") && !l.includes("connection closed"))
      yield* Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        // Two actions the handler holds until released, so that bursts pile up behind them.
        const holding = { first: yield* Deferred.make<void>(), second: yield* Deferred.make<void>() }
        const release = { first: yield* Deferred.make<void>(), second: yield* Deferred.make<void>() }
        const base = Robot.handlers(recorder)
        yield* PolicyServer.make({
          cameras: Robot.cameras,
          proprios: Robot.proprios,
          handlers: {
            ...base,
            applyAction: (a, context) =>
              Effect.gen(function*() {
                const held = a.data[0] === 100 ? "first" : a.data[0] === 202 ? "second" : undefined
                if (held !== undefined) {
                  yield* Deferred.succeed(holding[held], undefined)
                  yield* Deferred.await(release[held])
                }
                return yield* base.applyAction(a, context)
              })
          }
        })
        const client = yield* ClientTransport.use((t) => t.connect)
        const applied = (n: number) =>
          Effect.map(Effect.replicateEffect(Queue.take(recorder.actions), n), (list) => list.map((a) => a.action.data[0]))
        // Its sleep ends at 10 s like the summary's timer but is registered
        // first, so it runs first: the burst it lets through says the summary
        // (it is due), then it counts one more burst before the timer runs.
        yield* Effect.gen(function*() {
          yield* Effect.sleep(10_000)
          yield* Deferred.succeed(release.first, undefined)
          yield* Deferred.await(holding.second)
          yield* client.send(action(300))
          yield* client.send(action(301))
          yield* Deferred.succeed(release.second, undefined)
        }).pipe(Effect.forkScoped)
        for (const v of [10, 11, 12]) yield* client.send(action(v))
        expect(yield* applied(1)).toEqual([12]) // the first burst, said at once
        yield* TestClock.adjust(4000)
        for (const v of [20, 21]) yield* client.send(action(v))
        expect(yield* applied(1)).toEqual([21]) // counted: the summary's timer is armed for 10 s
        yield* client.send(action(100))
        yield* Deferred.await(holding.first)
        yield* client.send(action(201))
        yield* client.send(action(202))
        yield* TestClock.adjust(6000)
        expect(yield* applied(3)).toEqual([100, 202, 301])
        expect(summed()).toHaveLength(2) // the first burst; the summary at 10 s (20–21 and 201–202)
        yield* TestClock.adjust(10_000)
        expect(summed()).toHaveLength(3)
        expect(summed()[2]).toContain("1 burst of actions arriving together, 1 superseded from memory://chiral ← client 1 in the last 10 s")
      }).pipe(Effect.scoped, Effect.provide(memory), Effect.provide(logs.layer))
    }))
})

describe("NewestAction: the cap on waiting for a reader that is catching up", () => {
  /** Turns of the scheduler for the fiber that applies (it checks the reader once per turn). */
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 8; i++) yield* Effect.yieldNow
  })

  it.effect("a reader that never catches up (a flood read slower than it comes) still gets the newest applied once 1024 were superseded", () =>
    Effect.gen(function*() {
      const applied: Array<readonly [action: number, superseded: number]> = []
      const newest = yield* NewestAction.make(
        (action: number, superseded) => Effect.sync(() => void applied.push([action, superseded])),
        // the reader has always yielded with frames in hand
        () => true
      )
      /** Offers `from`..`to`, the applier checking the reader after each. */
      const flood = (from: number, to: number) =>
        Effect.gen(function*() {
          for (let v = from; v <= to; v++) {
            yield* newest.offer(v)
            yield* settle
          }
        })
      /** Waits (in turns of the scheduler, bounded) until `n` actions were applied. */
      const appliedCount = (n: number) =>
        Effect.gen(function*() {
          for (let turns = 0; applied.length < n && turns < 1000; turns++) yield* Effect.yieldNow
          return applied.length
        })
      yield* flood(0, 1023)
      // 1023 superseded: still waiting for the reader, nothing applied
      expect(applied).toEqual([])
      yield* flood(1024, 1024)
      expect(yield* appliedCount(1)).toBe(1)
      expect(applied).toEqual([[1024, 1024]])
      // and again for the next 1024 of the flood
      yield* flood(1025, 2048)
      expect(applied).toHaveLength(1)
      yield* flood(2049, 2049)
      expect(yield* appliedCount(2)).toBe(2)
      expect(applied).toEqual([[1024, 1024], [2049, 1024]])
    }).pipe(Effect.scoped))
})
