// What every client transport with an off-thread action dispatcher owes
// PolicyClient (see OffThreadDispatch), over real loopback connections: the same
// behaviour as the in-process dispatcher, and ticks that do not wait for a
// blocked main thread. Registered once per transport; no timed assertions
// beyond order and counts. The workers are the built JavaScript: run
// `npx tsc -b` first.
import {
  ActionPlan,
  type ActionTiming,
  CameraState,
  ClientTransport,
  OffThreadDispatch,
  PolicyClient,
  PolicyServer,
  PreciseTimer
} from "@chiral/core"
import { assert, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, Queue, Schedule, Stream, SubscriptionRef } from "effect"
import * as Pair from "./Pair.js"
import * as Robot from "./Robot.js"

export const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

/** Takes `n` applied actions from the recorder, in arrival order. */
export const takeActions = (queue: Queue.Queue<Robot.Applied>, n: number) =>
  Effect.gen(function*() {
    const out: Array<number> = []
    while (out.length < n) out.push(Number((yield* Queue.take(queue)).action.data[0]))
    return out
  })

/** Waits until `check` holds, looking every 10 ms (bounded by the test's timeout only). */
const waitFor = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(10) }), Effect.orDie)

/** Waits (bounded) until `check` holds. */
export const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(
    Effect.filterOrFail((ok) => ok),
    Effect.retry({ schedule: Schedule.spaced(10), times: 300 }),
    Effect.ignore
  )

/**
 * The client transport of the context, its connections' off-thread
 * dispatchers reporting each send's time (monotonic ms) into `sends`.
 */
const recordingSends = (sends: Array<number>) =>
  Layer.effect(
    ClientTransport,
    Effect.map(ClientTransport, (inner) =>
      ClientTransport.of({
        ...inner,
        connect: Effect.map(inner.connect, (connection) => {
          const dispatch = OffThreadDispatch.of(connection)
          if (dispatch === undefined) return connection
          const recorded: OffThreadDispatch.OffThreadDispatch = {
            ...dispatch,
            onDispatched: (listener) =>
              dispatch.onDispatched((count, at, due, obsTime) => {
                sends.push(at)
                listener(count, at, due, obsTime)
              })
          }
          return { ...connection, dispatch: recorded }
        })
      }))
  )

/** Registers the shared tests; `transports(thread)` gives a server and a client whose dispatcher runs there. */
export const dispatchContract = (transports: (thread: "worker" | "main") => Pair.Transports) => {
  it.live("queued actions go out one per tick in order; replace swaps the plan; pending, stop, clear and dispatched follow", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions([1, 2, 3].map(row))
      assert.strictEqual(yield* client.pendingActions, 3)
      yield* client.putActions([10, 11, 12, 13].map(row), { mode: "replace" })
      yield* client.putAction(row(14))
      assert.strictEqual(yield* client.pendingActions, 5)
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 5), [10, 11, 12, 13, 14])
      // dispatched catches up once the worker's reports are processed here
      yield* eventually(Effect.map(SubscriptionRef.get(client.dispatched), (n) => n >= 5))
      assert.strictEqual(yield* SubscriptionRef.get(client.dispatched), 5)
      assert.strictEqual(yield* client.pendingActions, 0)
      yield* client.stopActionDispatch
      yield* client.putActions([20, 21].map(row))
      yield* Effect.sleep(50)
      assert.strictEqual(yield* client.pendingActions, 2)
      yield* client.clearActions
      assert.strictEqual(yield* client.pendingActions, 0)
      // started again, on a fresh grid
      yield* client.putActions([30, 31].map(row))
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 2), [30, 31])
      yield* Effect.sleep(30)
      assert.isTrue(Option.isNone(yield* Queue.poll(recorder.actions)))
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("actions carry the camera timestamps of the newest observation", () =>
    Effect.gen(function*() {
      const { client, recorder, server } = yield* Pair.startPair()
      yield* server.updateImage("wrist", new Uint8Array(72))
      yield* client.getObs
      yield* server.updateImage("wrist", new Uint8Array(72).fill(1))
      const obs = yield* client.getObs
      yield* client.putAction(row(1))
      yield* client.startActionDispatch(100)
      const applied = yield* Queue.take(recorder.actions)
      assert.deepStrictEqual(applied.context.obsTimestamps, Object.fromEntries(obs.cameras.map((c) => [c.name, c.timestamp])))
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("ticks keep coming while the main thread is blocked", () =>
    Effect.gen(function*() {
      // When each action left, as its dispatcher reports it (monotonic ms).
      const sends: Array<number> = []
      const { client } = yield* Pair.startPair().pipe(Effect.provide(recordingSends(sends)))
      yield* client.putActions(Array.from({ length: 150 }, (_, i) => row(i)))
      yield* client.startActionDispatch(100)
      // Block this thread for 1.5 s: the 150 actions fall due meanwhile. The
      // reports of their sends can only be read afterwards, but they say when
      // each one left: during the block, unless the ticks waited for it. (10
      // of 150: on a busy machine the worker's thread waits for a core too.)
      const block = yield* Effect.sync(() => {
        const start = PreciseTimer.monotonicMillis()
        const end = start + 1500
        while (PreciseTimer.monotonicMillis() < end) {
          // busy
        }
        return { start, end }
      })
      // every action sent, or dropped because the worker itself stalled past a second
      const accounted = Effect.map(client.droppedActions, (dropped) => sends.length + dropped.stalled)
      yield* eventually(Effect.map(accounted, (n) => n >= 150))
      assert.strictEqual(yield* accounted, 150)
      const during = sends.filter((at) => at > block.start && at < block.end).length
      assert.isAtLeast(during, 10)
    }).pipe(Effect.scoped, Effect.provide(transports("worker"))))

  it.live("the main-thread client dispatches from its own fiber", () =>
    Effect.gen(function*() {
      const { client, recorder } = yield* Pair.startPair()
      yield* client.putActions([1, 2, 3].map(row))
      yield* client.startActionDispatch(200)
      assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [1, 2, 3])
    }).pipe(Effect.scoped, Effect.provide(transports("main"))))
}

/** Lets forked fibers run up to their next wait. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/** Waits until the client has sent `n` actions in all (no time limit but the test's). */
const awaitDispatched = (client: { readonly dispatched: SubscriptionRef.SubscriptionRef<number> }, n: number) =>
  SubscriptionRef.changes(client.dispatched).pipe(Stream.takeUntil((sent) => sent >= n), Stream.runDrain)

/**
 * The chunk modes (`ActionPlan`), the refill signal and per-action timing,
 * the same whether the dispatcher runs on the transport's worker or on
 * PolicyClient's fiber. Deterministic: no assertion depends on how fast the
 * machine is.
 */
export const chunkModesContract = (transports: (thread: "worker" | "main") => Pair.Transports) => {
  for (const thread of ["worker", "main"] as const) {
    it.live(`${thread}: blended chunks and a chunk's own timestamps reach the robot; refill signal and timings follow`, () =>
      Effect.gen(function*() {
        const { client, recorder } = yield* Pair.startPair()
        const timings = yield* Queue.unbounded<ActionTiming>()
        yield* client.actionTimings.pipe(
          Stream.runForEach((t) => Queue.offer(timings, t)),
          Effect.forkScoped({ startImmediately: true })
        )
        yield* settle
        const m = 0.5
        const w1 = Math.exp(-m)
        const mean = (a: number, b: number) => Math.fround((a + w1 * b) / (1 + w1))
        // two chunks blended at the head (no time): slot by slot, ACT weights; 130 alone in the last slot
        yield* client.putActions([0, 10, 20].map(row), { mode: ActionPlan.blend(m) })
        yield* client.putActions([100, 110, 120, 130].map(row), { mode: ActionPlan.blend(m) })
        assert.strictEqual(yield* client.pendingActions, 4)
        assert.strictEqual(yield* client.refill.pending, 4)
        yield* client.startActionDispatch(100)
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 4), [mean(0, 100), mean(10, 110), mean(20, 120), 130])
        assert.strictEqual(yield* client.refill.awaitBelow(1), 0)
        yield* client.stopActionDispatch

        // an action stamped with its chunk's observation (taken since the robot started: the
        // robot refuses stamps from before); a weight function (crossing to a worker as a
        // table) blends 9 into it with weight 3: (1·5 + 3·9) / 4 = 8
        const taken = yield* CameraState.captureTime
        const stamps = { wrist: taken, scene: taken }
        yield* client.putActions([row(5)], { obsTimestamps: stamps })
        yield* client.putActions([row(9)], { mode: ActionPlan.blend((k) => (k === 0 ? 1 : 3)) })
        yield* client.startActionDispatch(100)
        const last = yield* Queue.take(recorder.actions)
        assert.strictEqual(Number(last.action.data[0]), 8)
        assert.deepStrictEqual(last.context.obsTimestamps, stamps)

        const timed: Array<ActionTiming> = []
        for (let i = 0; i < 5; i++) timed.push(yield* Queue.take(timings))
        assert.deepStrictEqual(timed.map((t) => t.count), [1, 2, 3, 4, 5])
        // no observation yet: the first four carry none
        assert.deepStrictEqual(timed.map((t) => t.obsTime), [undefined, undefined, undefined, undefined, taken])
        assert.closeTo(timed[4]!.age!, timed[4]!.sentAt - taken, 1e-9)
        assert.deepStrictEqual(yield* client.droppedActions, { late: 0, replaced: 0, overflow: 0, robotSilent: 0, stalled: 0, disconnected: 0, earlierConnection: 0, reset: 0 })
      }).pipe(Effect.scoped, Effect.provide(transports(thread))))

    it.live(`${thread}: time-aligned: actions late on arrival are dropped and counted; none leaves after its slot`, () =>
      Effect.gen(function*() {
        const { client, recorder } = yield* Pair.startPair()
        // the chunk's observation, 350 ms old, must be one the robot could have given: wait until it has run that long
        const started = yield* CameraState.captureTime
        yield* CameraState.captureTime.pipe(
          Effect.repeat({ until: (now) => now >= started + 0.4, schedule: Schedule.spaced("20 millis") })
        )
        const hz = 10
        const timings = yield* Queue.unbounded<ActionTiming>()
        yield* client.actionTimings.pipe(
          Stream.runForEach((t) => Queue.offer(timings, t)),
          Effect.forkScoped({ startImmediately: true })
        )
        yield* client.startActionDispatch(hz)
        yield* settle
        // a chunk of 20 from an observation 350 ms old: the slots (due ± 50 ms) of actions 0–3 have ended;
        // the last one's ends 1.6 s from now (a busy machine can stall this process for a second)
        const chunk = 20
        const t0 = (yield* CameraState.captureTime) - 0.35
        yield* client.putActions(Array.from({ length: chunk }, (_, i) => row(i)), {
          mode: "time-aligned",
          obsTimestamps: { wrist: t0 - 0.01, scene: t0 }
        })
        // once nothing waits, every action was either sent or dropped
        yield* client.refill.awaitBelow(1)
        const { late } = yield* client.droppedActions
        assert.isAtLeast(late, 4)
        yield* awaitDispatched(client, chunk - late)
        const sent = chunk - late
        // the others, in order (a tick so late that it judged by the actual time
        // may have dropped one more), each stamped with its chunk's observation
        const applied: Array<Robot.Applied> = []
        for (let i = 0; i < sent; i++) applied.push(yield* Queue.take(recorder.actions))
        const values = applied.map((a) => Number(a.action.data[0]))
        assert.isTrue(values.every((v, i) => v >= 4 && (i === 0 || v > values[i - 1]!)), `sent ${values}`)
        assert.strictEqual(values.at(-1), chunk - 1)
        for (const a of applied) assert.deepStrictEqual(a.context.obsTimestamps, { wrist: t0 - 0.01, scene: t0 })
        // their timing: the age of that observation when each left
        for (let i = 0; i < sent; i++) {
          const t = yield* Queue.take(timings)
          assert.strictEqual(t.obsTime, t0)
          assert.isAbove(t.age!, 0.35)
          assert.closeTo(t.age!, t.sentAt - t0, 1e-9)
        }
      }).pipe(Effect.scoped, Effect.provide(transports(thread))))

    it.live(`${thread}: a robot that leaves a request unanswered beyond maxRobotSilence is sent no actions until it answers; those due meanwhile are dropped, counted and said`, () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        let silent = 0
        yield* Effect.gen(function*() {
          // the robot's second getObs answers only once the test opens the gate
          const gate = yield* Deferred.make<void>()
          const { client, recorder } = yield* Pair.startPair({
            holdObs: (n) => (n === 2 ? Deferred.await(gate) : Effect.void),
            client: { maxRobotSilence: 50 }
          })
          yield* client.getObs
          yield* client.putActions(Array.from({ length: 2000 }, (_, i) => row(i)))
          yield* client.startActionDispatch(100)
          assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [0, 1, 2])
          const unanswered = yield* Effect.forkChild(client.getObs)
          yield* waitFor(Effect.map(client.droppedActions, (d) => d.robotSilent >= 5))
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(unanswered)
          // once the robot has answered, what still waited (planned before the silence) is
          // dropped too, and a new plan goes out
          yield* client.putActions([5000, 5001, 5002].map(row))
          const sentBefore = yield* SubscriptionRef.get(client.dispatched)
          yield* waitFor(Effect.map(SubscriptionRef.get(client.dispatched), (n) => n >= sentBefore + 3))
          yield* client.stopActionDispatch
          const sent = yield* SubscriptionRef.get(client.dispatched)
          silent = (yield* client.droppedActions).robotSilent
          // in order, each one once: the first plan up to the silence, every other action of it dropped
          const values = [0, 1, 2, ...(yield* takeActions(recorder.actions, sent - 3))]
          const first = values.slice(0, -3)
          assert.deepStrictEqual(first, Array.from({ length: first.length }, (_, i) => i), `sent ${values.join(",")}`)
          assert.deepStrictEqual(values.slice(-3), [5000, 5001, 5002])
          assert.strictEqual(first.length + silent, 2000)
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
        const began = logs.lines.filter((l) => l.includes("nothing has come from the robot for over 0.05 s"))
        assert.strictEqual(began.length, 1, logs.lines.join("\n"))
        const ended = logs.lines.filter((l) => l.includes("the robot answered again after"))
        assert.strictEqual(ended.length, 1, logs.lines.join("\n"))
        // one line for the whole silence, its counts exact: every drop reported before it
        const counts = /after \d+\.\d\d s; (\d+) actions due meanwhile were dropped, and (\d+) actions? still waiting/.exec(ended[0]!)
        assert.isNotNull(counts, ended[0])
        assert.strictEqual(Number(counts![1]) + Number(counts![2]), silent, ended[0])
      }).pipe(Effect.provide(transports(thread))))

    it.live(`${thread}: a chunk that cannot be put dies with a RangeError and leaves the queue as it was`, () =>
      Effect.gen(function*() {
        const { client } = yield* Pair.startPair()
        yield* client.putActions([1, 2].map(row))
        const mismatched = yield* Effect.exit(client.putActions([[1, 2]], { mode: ActionPlan.blend() }))
        const untimed = yield* Effect.exit(client.putActions([row(3)], { mode: "time-aligned" }))
        for (const exit of [mismatched, untimed]) {
          assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
          assert.instanceOf(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause), RangeError)
        }
        assert.strictEqual(yield* client.pendingActions, 2)
      }).pipe(Effect.scoped, Effect.provide(transports(thread))))
  }
}

/**
 * The test robot, applying every action as read, and what it did in order:
 * `a<v>` an action applied (v its first value), `reset` a reset begun.
 */
const eventRobot = Effect.gen(function*() {
  const events: Array<string> = []
  const robot = Robot.handlers(yield* Robot.makeRecorder)
  yield* PolicyServer.make({
    cameras: Robot.cameras,
    proprios: Robot.proprios,
    coalesceActions: false,
    handlers: {
      ...robot,
      reset: Effect.andThen(Effect.sync(() => events.push("reset")), robot.reset!),
      applyAction: (action, context) =>
        Effect.andThen(Effect.sync(() => events.push(`a${action.data[0]}`)), robot.applyAction!(action, context))
    }
  })
  return events
})

/**
 * A reset empties the action queue where it lives (on the transport's worker,
 * or PolicyClient's fiber) before its request goes: the robot applies nothing
 * of the plan before the reset after it, however the ticks fall. Registered
 * for transports whose worker writes to the connection the requests go over
 * (the WebSocket client's): an action it wrote before it emptied its queue is
 * read before the reset.
 */
export const resetContract = (transports: (thread: "worker" | "main") => Pair.Transports) => {
  for (const thread of ["worker", "main"] as const) {
    it.live(`${thread}: a reset drops what waits for dispatch, counted; the robot applies nothing of it after the reset`, () =>
      Effect.gen(function*() {
        const events = yield* eventRobot
        const client = yield* PolicyClient.make({ quiet: true })
        yield* client.getObs
        yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(i)))
        yield* client.startActionDispatch(50)
        yield* waitFor(Effect.map(SubscriptionRef.get(client.dispatched), (n) => n >= 3))
        yield* client.reset
        const dropped = (yield* client.droppedActions).reset
        // the next chunk is the first thing applied after the reset
        yield* client.putActions([row(1000)])
        yield* waitFor(Effect.sync(() => events.includes("a1000")))
        assert.deepStrictEqual(events.slice(events.indexOf("reset") + 1), ["a1000"])
        // what was sent came before the reset; the rest was dropped
        const before = events.slice(0, events.indexOf("reset"))
        assert.deepStrictEqual(before, Array.from({ length: before.length }, (_, i) => `a${i}`))
        assert.strictEqual(before.length + dropped, 100)
      }).pipe(Effect.scoped, Effect.provide(transports(thread))))
  }
}

/**
 * Stops this process (SIGSTOP: the policy, its dispatcher's thread and the
 * test robot) for `seconds`, as the trial stopped a policy; returns once it
 * runs again. A child process stops and continues it; this thread waits for
 * the child, so it is paused too, on either side of the stop.
 */
const stopThisProcess = (seconds: number) =>
  Effect.sync(() => {
    const pid = process.pid
    const done = spawnSync("sh", ["-c", `kill -STOP ${pid}; sleep ${seconds}; kill -CONT ${pid}`])
    if (done.status !== 0) throw new Error(`could not stop and continue this process: ${done.stderr}`)
  })

/**
 * The trial: a policy process stopped while actions wait. The dispatcher's
 * first tick after the stop runs more than a second after its grid time and
 * drops what waits (`stalled`), counted and said once; the robot applies none
 * of it; the next chunk goes. Real time: the stop is 1.5 s, and starts just
 * after a send, so that it falls between two ticks (a stop in the middle of a
 * tick, some µs of every 100 ms, is seen by no tick; see `ActionPlan.take`).
 */
export const stallContract = (transports: (thread: "worker" | "main") => Pair.Transports) => {
  for (const thread of ["worker", "main"] as const) {
    // (SIGSTOP and sh: not on Windows)
    it.live.skipIf(process.platform === "win32")(`${thread}: the process stopped 1.5 s while actions wait: they are dropped (stalled), counted and said once, never applied late; the next put goes`, () =>
      Effect.gen(function*() {
        const logs = yield* Robot.captureLogs
        yield* Effect.gen(function*() {
          const events = yield* eventRobot
          const client = yield* PolicyClient.make({ quiet: true })
          yield* client.getObs
          yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(i)))
          yield* client.startActionDispatch(10)
          // right after the third send is reported, once the tick that sent it has ended (on this
          // thread: its fiber goes on to its sleep when this one yields): the next tick is ~100 ms away
          yield* SubscriptionRef.changes(client.dispatched).pipe(Stream.filter((n) => n >= 3), Stream.runHead)
          for (let i = 0; i < 16; i++) yield* Effect.yieldNow
          yield* stopThisProcess(1.5)
          // (sent on, the queue would take 9.6 s more to run dry)
          yield* waitFor(Effect.map(client.pendingActions, (n) => n === 0))
          const sent = yield* SubscriptionRef.get(client.dispatched)
          const stalled = (yield* client.droppedActions).stalled
          assert.isAbove(stalled, 0, `${sent} sent`)
          assert.strictEqual(sent + stalled, 100)
          // the next chunk is the first thing applied after what was sent before the stop
          yield* client.putActions([row(1000)])
          yield* waitFor(Effect.sync(() => events.includes("a1000")))
          assert.deepStrictEqual(events, [...Array.from({ length: sent }, (_, i) => `a${i}`), "a1000"])
          assert.deepStrictEqual(yield* client.droppedActions, {
            late: 0,
            replaced: 0,
            overflow: 0,
            robotSilent: 0,
            stalled,
            disconnected: 0,
            earlierConnection: 0,
            reset: 0
          })
          const said = logs.lines.filter((line) => line.includes("did not run"))
          assert.deepStrictEqual(said, [
            `Warn: chiral: action dispatch on ${thread === "worker" ? "its worker thread" : "this thread"} did not run ` +
            `for over 1 s (this process was stopped, or ${thread === "worker" ? "" : "this thread blocked or "}starved ` +
            `of CPU): ${stalled} actions planned before it dropped (waiting, or put since from an older observation; ` +
            `counted in droppedActions().stalled); actions planned after it go on`
          ])
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
      }).pipe(Effect.provide(transports(thread))))
  }
}
