// Reconnection on virtual time (TestClock) over the in-memory transport: the
// schedule of attempts, the states, and what happens to requests, queued
// actions and running loops across a server restart.
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Option, Queue, Ref, References, Result, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import { TestClock } from "effect/testing"
import { decodeFrame, encodeFrame, type Observation } from "@chiral/protocol"
import {
  ClientTransport,
  type Connection,
  MemoryTransport,
  PolicyClient,
  type PolicyServer,
  ServerTransport,
  TransportError,
  unresolvedHost
} from "../src/index.js"
import { ConnectTimeout, frameBytes } from "../src/Transport.js"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

const advanceTo = (millis: number, step = 1) =>
  Effect.gen(function*() {
    yield* settle
    let now = yield* Clock.currentTimeMillis
    while (now < millis) {
      yield* TestClock.adjust(Math.min(step, millis - now))
      yield* settle
      now = yield* Clock.currentTimeMillis
    }
  })

/** An in-memory network whose client transport records when each connection attempt was made. */
const recordedNetwork = Effect.gen(function*() {
  const memory = MemoryTransport.make()
  const attempts = yield* Ref.make<ReadonlyArray<number>>([])
  const client = ClientTransport.of({
    ...memory.client,
    connect: Effect.andThen(
      Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(attempts, (list) => [...list, at])),
      memory.client.connect
    )
  })
  return { server: memory.server, client, attempts }
})

/** The test robot served in a scope of its own, so that the test can stop it (a server going away). */
const serveRobot = (server: ServerTransport["Service"], recorder: Robot.Recorder) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Pair.startServerOnlyWith(recorder).pipe(Effect.provideService(ServerTransport, server), Scope.provide(scope))
    return scope
  })

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]

const refusal = "chiral: refused by the robot's onConnect: busy"

/**
 * `recordedNetwork` whose server turns every client away while `refusing.on`:
 * each connection ends at once as a WebSocket one does when the robot's
 * onConnect refuses it (a close 1008 with why, before any frame).
 */
/**
 * A network whose server closes each connection with `code` while `refusing.on`
 * (after one frame of its own when `heard`: a connection it served).
 */
const refusingNetworkWith = (code: number, heard: boolean, holdMillis = 0) =>
  Effect.gen(function*() {
    const network = yield* recordedNetwork
    const refusing = { on: true }
    const closed = new TransportError({
      reason: "Closed",
      address: network.client.address,
      detail: `close code ${code}: ${refusal}`,
      closedBy: { code, reason: refusal }
    })
    const said = heard ? Stream.make(encodeFrame({ type: "metadata_response", data: {} })) : Stream.empty
    // held a while before it is turned away, as a recording proxy whose robot does not answer holds it
    const held = holdMillis === 0 ? Stream.empty : Stream.drain(Stream.fromEffect(Effect.sleep(holdMillis)))
    const refused: Connection = {
      id: network.client.address,
      frames: Stream.concat(Stream.concat(said, held), Stream.fail(closed)),
      send: () => holdMillis === 0 ? Effect.fail(closed) : Effect.void
    }
    const client = ClientTransport.of({
      ...network.client,
      connect: Effect.flatMap(network.client.connect, (connection) => Effect.succeed(refusing.on ? refused : connection))
    })
    return { ...network, client, refusing }
  })

const refusingNetwork = refusingNetworkWith(1008, false)

describe("reconnection on TestClock", () => {
  it.effect("attempts at once, then after 100, 200, 400, 800 ms, then every second; states and counts follow", () =>
    Effect.gen(function*() {
      const network = yield* recordedNetwork
      const recorder = yield* Robot.makeRecorder
      const first = yield* serveRobot(network.server, recorder)
      const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
      expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
      yield* Ref.set(network.attempts, [])

      yield* Scope.close(first, Exit.void)
      yield* client.awaitDisconnect
      expect(yield* SubscriptionRef.get(client.connectionState)).toBe("reconnecting")
      expect(failure(yield* Effect.exit(client.getObs))).toMatchObject({ reason: "Disconnected", request: "obs_request" })
      yield* advanceTo(3500, 50)
      // the gaps between attempts: exponential from 100 ms, capped at 1 s
      const times = yield* Ref.get(network.attempts)
      const gaps = times.slice(1).map((t, i) => t - times[i]!)
      expect(gaps).toEqual([100, 200, 400, 800, 1000, 1000])
      expect(yield* SubscriptionRef.get(client.reconnects)).toBe(0)

      yield* serveRobot(network.server, recorder)
      yield* advanceTo(4500, 50)
      expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
      expect(yield* SubscriptionRef.get(client.reconnects)).toBe(1)
      expect((yield* client.getObs).cameras.length).toBe(2)
    }).pipe(Effect.scoped))

  it.effect("a client the server turns away (1008) backs off as from a server that is down: said once, repeats at debug, then its acceptance", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const network = yield* refusingNetwork
        const recorder = yield* Robot.makeRecorder
        const serving = yield* serveRobot(network.server, recorder)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        yield* advanceTo(3700, 50)
        // each refusal counts as a failed attempt: exponential from 100 ms, capped at 1 s, not at once after each
        const times = yield* Ref.get(network.attempts)
        expect(times.slice(1).map((t, i) => t - times[i]!)).toEqual([100, 200, 400, 800, 1000, 1000])
        network.refusing.on = false
        yield* advanceTo(4600, 50)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        expect((yield* client.getObs).cameras.length).toBe(2)

        // after a connection that worked, a loss starts the schedule over: at once, then 100 ms…
        yield* Ref.set(network.attempts, [])
        yield* Scope.close(serving, Exit.void)
        yield* client.awaitDisconnect
        const lost = yield* Clock.currentTimeMillis
        yield* advanceTo(lost + 750, 50)
        const again = yield* Ref.get(network.attempts)
        expect(again.map((t) => t - lost)).toEqual([0, 100, 300, 700])
      }).pipe(
        Effect.scoped,
        Effect.provide(logs.layer),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
      const refusals = logs.lines.filter((l) => l.includes(refusal))
      const at = (level: string) => refusals.filter((l) => l.startsWith(level) && l.includes("reconnecting"))
      expect(at("Warn")).toEqual([
        `Warn: chiral: memory://chiral: closed by the server: 1008 ${refusal}; reconnecting on the schedule, as from a server that is down (the same refusal again is logged at debug level)`
      ])
      // 7 refusals: at 0, 100, 300, 700, 1500, 2500 and 3500 ms
      expect(at("Debug")).toHaveLength(6)
      expect(at("Debug")[5]).toContain("(7 refusals in a row)")
      // the connections that were refused at once were not announced as reconnections at info level
      expect(logs.lines.filter((l) => l.startsWith("Info") && l.includes("reconnected (reconnection"))).toEqual([])
      expect(logs.lines).toContain("Info: chiral: memory://chiral: accepted by the server after 7 refusals in 4.6 s")
      // the loss after it is said as usual
      expect(logs.lines).toContain("Warn: chiral: memory://chiral: closed by the server; reconnecting")
    }))

  it.effect("1013 (try again later) turns a client away as 1008 does; a 1008 after the server answered ends a connection it served: then at once", () =>
    Effect.gen(function*() {
      for (const [code, heard, expected] of [[1013, false, [100, 200, 400]], [1008, true, [0]]] as const) {
        const network = yield* refusingNetworkWith(code, heard)
        yield* serveRobot(network.server, yield* Robot.makeRecorder)
        const start = yield* Clock.currentTimeMillis
        yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        // a served connection ends once: the next one is let in
        if (heard) yield* settle.pipe(Effect.andThen(Effect.sync(() => void (network.refusing.on = false))))
        yield* advanceTo(start + 750, 50)
        network.refusing.on = false
        const times = yield* Ref.get(network.attempts)
        expect(times.slice(1, expected.length + 1).map((t, i) => t - times[i]!)).toEqual(expected)
      }
    }).pipe(Effect.scoped))

  it.effect("turned away again and again after being held (a recording proxy whose robot is down: 1013), a client's drops are said once, not at every attempt", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      let connectionsWithDrops = 0
      yield* Effect.gen(function*() {
        const network = yield* refusingNetworkWith(1013, false, 2000)
        network.refusing.on = false
        const serving = yield* serveRobot(network.server, yield* Robot.makeRecorder)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        yield* client.getObs
        network.refusing.on = true
        yield* Scope.close(serving, Exit.void)
        yield* client.awaitDisconnect
        yield* serveRobot(network.server, yield* Robot.makeRecorder)
        const start = yield* Clock.currentTimeMillis
        let connected = false
        while ((yield* Clock.currentTimeMillis) < start + 12_000) {
          yield* advanceTo((yield* Clock.currentTimeMillis) + 100, 50)
          const now = (yield* SubscriptionRef.get(client.connectionState)) === "connected"
          if (now && !connected) connectionsWithDrops++
          connected = now
          // a closed-loop policy acting on what it saw before the loss: dropped on every connection
          if (now) yield* Effect.ignore(client.putActions([row(1)]))
        }
        expect((yield* client.droppedActions).earlierConnection).toBeGreaterThan(connectionsWithDrops)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      expect(connectionsWithDrops).toBeGreaterThanOrEqual(3)
      expect(logs.lines.filter((l) => l.includes("computed from an observation of an earlier connection"))).toHaveLength(1)
    }))

  it.effect("a custom schedule that runs out leaves the client closed; reconnect: false closes it at the first loss", () =>
    Effect.gen(function*() {
      for (const reconnect of [Schedule.recurs(2), false as const]) {
        const network = yield* recordedNetwork
        const recorder = yield* Robot.makeRecorder
        const serving = yield* serveRobot(network.server, recorder)
        const client = yield* PolicyClient.make({ quiet: true, reconnect }).pipe(
          Effect.provideService(ClientTransport, network.client)
        )
        yield* Ref.set(network.attempts, [])
        yield* Scope.close(serving, Exit.void)
        yield* advanceTo((yield* Clock.currentTimeMillis) + 1000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("closed")
        // one attempt, and two more on the schedule; none without reconnection
        expect((yield* Ref.get(network.attempts)).length).toBe(reconnect === false ? 0 : 3)
        expect(failure(yield* Effect.exit(client.putAction(row(1))))).toMatchObject({
          _tag: "RequestError",
          reason: "Disconnected",
          request: "apply_action"
        })
      }
    }).pipe(Effect.scoped))

  it.effect("across a restart: queued actions are dropped and never sent to the new server; dispatch and the obs stream carry on", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const network = yield* recordedNetwork
        const before = yield* Robot.makeRecorder
        const first = yield* serveRobot(network.server, before)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(i)))
        yield* client.startActionDispatch(10)
        yield* client.startObsStream(10)
        yield* advanceTo(250)
        const sentBefore = (yield* Queue.clear(before.actions)).map((a) => a.action.data[0])
        expect(sentBefore).toEqual([0, 1, 2])

        yield* Scope.close(first, Exit.void)
        yield* client.awaitDisconnect
        yield* settle
        expect((yield* client.droppedActions).disconnected).toBe(97)
        expect(yield* client.pendingActions).toBe(0)
        // while disconnected, nothing can be queued for a later connection
        expect(failure(yield* Effect.exit(client.putActions([row(500)])))).toMatchObject({ reason: "Disconnected" })

        const after = yield* Robot.makeRecorder
        yield* serveRobot(network.server, after)
        yield* advanceTo(1000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        yield* client.putActions([1000, 1001].map(row))
        yield* advanceTo(1500, 10)
        // the dispatcher kept its 10 Hz on the new connection; only new actions arrived there
        expect((yield* Queue.clear(after.actions)).map((a) => a.action.data[0])).toEqual([1000, 1001])
        expect(yield* SubscriptionRef.get(client.dispatched)).toBe(5)
        // the obs stream asks the new server too
        expect((yield* Ref.get(after.obsRequests)).length).toBeGreaterThan(3)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const dropLines = logs.lines.filter((l) => l.includes("queued actions dropped"))
      expect(dropLines).toHaveLength(1)
      expect(dropLines[0]).toContain("action dispatch on this thread stopped: closed by the server; 97 queued actions dropped")
      expect(dropLines[0]).toContain("resumes at 10 Hz on the next connection")
      expect(logs.lines.some((l) => l.includes("reconnected (reconnection 1)"))).toBe(true)
    }))

  it.effect("an action whose send is still waiting when the connection goes is counted dropped: dispatched + dropped = put", () =>
    Effect.gen(function*() {
      const network = yield* recordedNetwork
      const recorder = yield* Robot.makeRecorder
      const serving = yield* serveRobot(network.server, recorder)
      // The connection's fourth apply_action is handed over and never finishes
      // being written (a socket the peer stopped reading).
      let actionsSent = 0
      const stalling = ClientTransport.of({
        ...network.client,
        connect: Effect.map(network.client.connect, (connection) => ({
          ...connection,
          send: (frame) => {
            const message = decodeFrame(frameBytes(frame))
            if (Result.isSuccess(message) && message.success.type === "apply_action" && ++actionsSent === 4) {
              return Effect.never
            }
            return connection.send(frame)
          }
        }))
      })
      const client = yield* PolicyClient.make({ quiet: true, reconnect: false }).pipe(
        Effect.provideService(ClientTransport, stalling)
      )
      yield* client.putActions(Array.from({ length: 10 }, (_, i) => row(i)))
      yield* client.startActionDispatch(10)
      yield* advanceTo(1000, 10)
      expect(actionsSent).toBe(4)
      expect(yield* SubscriptionRef.get(client.dispatched)).toBe(3)

      yield* Scope.close(serving, Exit.void)
      yield* client.awaitDisconnect
      yield* settle
      // the stalled one is among the dropped: 3 sent, 7 dropped (6 waiting + 1 cut off)
      expect(yield* SubscriptionRef.get(client.dispatched)).toBe(3)
      expect((yield* client.droppedActions).disconnected).toBe(7)
    }).pipe(Effect.scoped))

  it.effect("requests waiting when the connection goes (in flight, or for the slot) fail with Disconnected at once, not at their timeout", () =>
    Effect.gen(function*() {
      const network = yield* recordedNetwork
      const recorder = yield* Robot.makeRecorder
      const serving = yield* Scope.make()
      yield* Pair.startServerOnlyWith(recorder, { obsDelayMillis: 10_000 }).pipe(
        Effect.provideService(ServerTransport, network.server),
        Scope.provide(serving)
      )
      const client = yield* PolicyClient.make({ quiet: true, requestTimeout: 60_000 }).pipe(
        Effect.provideService(ClientTransport, network.client)
      )
      const inFlight = yield* Effect.forkChild(Effect.exit(client.getObs))
      // this one waits for the slot, which the first holds
      const queued = yield* Effect.forkChild(Effect.exit(client.getMetadata))
      yield* advanceTo(100, 10)
      yield* Scope.close(serving, Exit.void)
      yield* settle
      expect(failure(yield* Fiber.join(inFlight))).toMatchObject({ reason: "Disconnected", request: "obs_request" })
      expect(failure(yield* Fiber.join(queued))).toMatchObject({ reason: "Disconnected", request: "metadata" })
      expect(yield* Clock.currentTimeMillis).toBe(100)
    }).pipe(Effect.scoped))
  it.effect("an earlier connection's observation: forgotten at the loss, and actions computed from it are dropped, never sent to the robot connected next", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const network = yield* recordedNetwork
        const robot = (recorder: Robot.Recorder) =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { server } = yield* Pair.startServerOnlyWith(recorder).pipe(
              Effect.provideService(ServerTransport, network.server),
              Scope.provide(scope)
            )
            return { scope, server }
          })
        // a frame stamped with this moment
        const frame = (server: PolicyServer.PolicyServerApi) => server.updateImage("wrist", new Uint8Array(72))
        const wristOf = (obs: Observation) => obs.cameras.find((c) => c.name === "wrist")!.timestamp

        const first = yield* robot(yield* Robot.makeRecorder)
        yield* advanceTo(50)
        yield* frame(first.server)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        const oldStamps = { wrist: wristOf(yield* client.getObs) }
        expect(oldStamps.wrist).toBe(0.05)
        yield* advanceTo(100)

        yield* Scope.close(first.scope, Exit.void)
        yield* client.awaitDisconnect
        // forgotten by the time the client says it is disconnected
        expect(yield* SubscriptionRef.get(client.latestObs)).toEqual(Option.none())
        // no robot at all: a legacy step is Disconnected, as every request (not the Stale of a robot not yet observed)
        expect(failure(yield* Effect.exit(client.step([row(0)])))).toMatchObject({ reason: "Disconnected", request: "action" })

        const after = yield* Robot.makeRecorder
        const second = yield* robot(after)
        yield* advanceTo(1000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        yield* client.startActionDispatch(10)
        // Nothing observed on this connection yet: a closed-loop policy's actions are the old robot's.
        yield* client.putActions([1, 2].map(row))
        yield* client.sendAction(row(3))
        yield* client.putActions([row(4)], { obsTimestamps: oldStamps })
        expect((yield* client.droppedActions).earlierConnection).toBe(4)
        expect(yield* client.pendingActions).toBe(0)
        // a chunk that cannot be put dies as ever, rather than being counted
        const untimed = yield* Effect.exit(client.putActions([row(0)], { mode: "time-aligned" }))
        expect(Exit.isFailure(untimed) && Cause.hasDies(untimed.cause)).toBe(true)
        // the legacy step cannot be dropped quietly: it is refused
        expect(failure(yield* Effect.exit(client.step([row(0)])))).toMatchObject({ reason: "Stale", request: "action" })

        // The new robot's first observation has no wrist frame yet (0): its first frame comes later.
        expect(wristOf(yield* client.getObs)).toBe(0)
        yield* advanceTo(1100, 10)
        yield* frame(second.server)
        const fresh = wristOf(yield* client.getObs)
        yield* advanceTo(1200, 10)
        yield* frame(second.server)
        const newest = wristOf(yield* client.getObs)
        // Stamped before this connection's first frame, or after its latest (a robot clock that restarted).
        yield* client.putActions([row(5)], { obsTimestamps: oldStamps })
        yield* client.putActions([row(6)], { obsTimestamps: { wrist: newest + 1 } })
        expect((yield* client.droppedActions).earlierConnection).toBe(6)
        // This connection's observations go out, an earlier one of them too; names that
        // are not the robot's cameras, and a camera without a frame (0), are not judged.
        yield* client.putActions([row(7)], { obsTimestamps: { wrist: fresh, t: 1e9 } })
        yield* client.putActions([row(8)], { obsTimestamps: { wrist: 0, scene: 0 } })
        yield* client.putActions([row(9)])
        yield* advanceTo(1600, 10)
        const applied = yield* Queue.clear(after.actions)
        expect(applied.map((a) => a.action.data[0])).toEqual([7, 8, 9])
        expect(applied[2]!.context.obsTimestamps).toEqual({ wrist: newest, scene: 0 })
        expect((yield* client.droppedActions).earlierConnection).toBe(6)

        // Lost again: the next connection says it once more.
        yield* Scope.close(second.scope, Exit.void)
        yield* client.awaitDisconnect
        yield* robot(yield* Robot.makeRecorder)
        yield* advanceTo(3000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        yield* client.putActions([row(10)])
        expect((yield* client.droppedActions).earlierConnection).toBe(7)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const lines = logs.lines.filter((l) => l.includes("computed from an observation of an earlier connection"))
      // once per connection, saying why
      expect(lines).toHaveLength(2)
      expect(lines[0]).toContain("2 actions dropped")
      expect(lines[0]).toContain("nothing of the robot now connected has been observed yet")
      expect(lines[1]).toContain("1 action dropped")
    }))

  it.effect("a silence cut short by the connection's loss: the next connection is watched afresh, and its own silence is said again", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const network = yield* recordedNetwork
        // each robot's second getObs is never answered within the test
        const silentRobot = (recorder: Robot.Recorder) =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            yield* Pair.startServerOnlyWith(recorder, { obsDelayMillis: (n) => (n === 2 ? 100_000 : 0) }).pipe(
              Effect.provideService(ServerTransport, network.server),
              Scope.provide(scope)
            )
            return scope
          })
        const first = yield* silentRobot(yield* Robot.makeRecorder)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        yield* client.getObs
        yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(i)))
        yield* client.startActionDispatch(10)
        yield* advanceTo(500, 10)
        yield* Effect.forkChild(Effect.exit(client.getObs))
        yield* advanceTo(2000, 10)
        // silent beyond 1 s from 1.5 s: the ticks of 1.6–2.0 s dropped
        expect((yield* client.droppedActions).robotSilent).toBe(5)

        yield* Scope.close(first, Exit.void)
        yield* client.awaitDisconnect
        const after = yield* Robot.makeRecorder
        yield* silentRobot(after)
        yield* advanceTo(3000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        yield* client.getObs
        yield* client.putActions([700, 701].map(row))
        yield* advanceTo(3500, 10)
        // not silent: the new connection has its own watch
        expect((yield* Queue.clear(after.actions)).map((a) => a.action.data[0])).toEqual([700, 701])
        yield* client.putActions(Array.from({ length: 100 }, (_, i) => row(800 + i)))
        yield* Effect.forkChild(Effect.exit(client.getObs))
        yield* advanceTo(6000, 10)
        expect((yield* client.droppedActions).robotSilent).toBeGreaterThan(5)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const opened = logs.lines.filter((l) => l.includes("nothing has come from the robot for over 1 s"))
      expect(opened).toHaveLength(2)
      expect(logs.lines.some((l) => l.includes("answered again"))).toBe(false)
    }))

  it.effect("a client that never observed the robot sends as told after a reconnection (open loop)", () =>
    Effect.gen(function*() {
      const network = yield* recordedNetwork
      const first = yield* serveRobot(network.server, yield* Robot.makeRecorder)
      const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
      yield* Scope.close(first, Exit.void)
      yield* client.awaitDisconnect
      const after = yield* Robot.makeRecorder
      yield* serveRobot(network.server, after)
      yield* advanceTo(1000, 10)
      yield* client.putActions([1, 2].map(row))
      yield* client.startActionDispatch(10)
      yield* advanceTo(1500, 10)
      expect((yield* Queue.clear(after.actions)).map((a) => a.action.data[0])).toEqual([1, 2])
      expect((yield* client.droppedActions).earlierConnection).toBe(0)
    }).pipe(Effect.scoped))
})

/**
 * A client transport whose next attempts fail with `failures` (in order),
 * then connect through `network`; `attempts` counts every attempt.
 */
const scriptedNetwork = (failures: Array<TransportError>) =>
  Effect.gen(function*() {
    const network = yield* recordedNetwork
    const client = ClientTransport.of({
      ...network.client,
      connect: Effect.suspend(() => {
        const next = failures.shift()
        if (next === undefined) return network.client.connect
        return Effect.andThen(
          Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(network.attempts, (list) => [...list, at])),
          Effect.fail(next)
        )
      })
    })
    return { ...network, client }
  })

const unresolved = (code: string) => unresolvedHost({ address: "memory://chiral", host: "robto", code })

describe("host names that do not resolve", () => {
  it.effect("ENOTFOUND fails the first connection at once with InvalidAddress naming the host; nothing is waited for", () =>
    Effect.gen(function*() {
      const network = yield* scriptedNetwork([unresolved("ENOTFOUND")])
      const recorder = yield* Robot.makeRecorder
      yield* serveRobot(network.server, recorder)
      const error = failure(yield* Effect.exit(PolicyClient.make({ quiet: true }).pipe(
        Effect.provideService(ClientTransport, network.client)
      )))
      expect(error).toMatchObject({ reason: "InvalidAddress", unresolved: { host: "robto", code: "ENOTFOUND" } })
      expect(error.message).toBe(`InvalidAddress (memory://chiral): cannot resolve host "robto" (ENOTFOUND)`)
      expect((yield* Ref.get(network.attempts)).length).toBe(1)
      expect(yield* Clock.currentTimeMillis).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("EAI_AGAIN on the first connection is retried with one warning naming the host (quiet or not); then it connects", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const network = yield* scriptedNetwork([1, 2, 3].map(() => unresolved("EAI_AGAIN")))
        const recorder = yield* Robot.makeRecorder
        yield* serveRobot(network.server, recorder)
        const making = yield* Effect.forkChild(PolicyClient.make({ quiet: true }).pipe(
          Effect.provideService(ClientTransport, network.client)
        ))
        yield* advanceTo(1000, 10)
        const client = yield* Fiber.join(making)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        expect((yield* Ref.get(network.attempts)).length).toBe(4)
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const warnings = logs.lines.filter((l) => l.includes("cannot resolve"))
      expect(warnings).toEqual([
        `Warn: chiral: memory://chiral: cannot resolve host "robto" (EAI_AGAIN: a temporary failure: the resolver could not answer now); trying again`
      ])
    }))

  it.effect("with an openTimeout, a name that never resolves fails when it runs out, the error still naming the host", () =>
    Effect.gen(function*() {
      const network = yield* scriptedNetwork(Array.from({ length: 100 }, () => unresolved("EAI_AGAIN")))
      const making = yield* Effect.forkChild(Effect.exit(PolicyClient.make({ quiet: true, openTimeout: 500 }).pipe(
        Effect.provideService(ClientTransport, network.client)
      )))
      yield* advanceTo(1000, 10)
      const error = failure(yield* Fiber.join(making))
      expect(error).toMatchObject({ reason: "Unavailable", unresolved: { host: "robto", code: "EAI_AGAIN" } })
      expect(error.detail).toContain(`cannot resolve host "robto" (EAI_AGAIN`)
    }).pipe(Effect.scoped))

  it.effect("after a connection was made, even ENOTFOUND is retried (a network blip), logged once with the reason; then it reconnects", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const failures: Array<TransportError> = []
        const network = yield* scriptedNetwork(failures)
        const recorder = yield* Robot.makeRecorder
        const first = yield* serveRobot(network.server, recorder)
        const client = yield* PolicyClient.make({ quiet: true }).pipe(Effect.provideService(ClientTransport, network.client))
        failures.push(...[1, 2, 3, 4].map(() => unresolved("ENOTFOUND")))
        yield* Scope.close(first, Exit.void)
        yield* client.awaitDisconnect
        yield* advanceTo(150, 10)
        expect(failure(yield* Effect.exit(client.getObs)).detail).toBe(`reconnecting: cannot resolve host "robto" (ENOTFOUND)`)
        yield* serveRobot(network.server, recorder)
        yield* advanceTo(2000, 10)
        expect(yield* SubscriptionRef.get(client.connectionState)).toBe("connected")
        expect(yield* SubscriptionRef.get(client.reconnects)).toBe(1)
        expect(failures).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      expect(logs.lines.filter((l) => l.includes("cannot resolve"))).toEqual([
        `Warn: chiral: memory://chiral: reconnection attempt failed: cannot resolve host "robto" (ENOTFOUND); trying again`
      ])
    }))
})

describe("an openTimeout on a stalled process (real time)", () => {
  /** What a transport that saw a silent server says. */
  const saidNothing = (address: string) => new TransportError({ reason: "Silent", address, detail: "said nothing" })

  /** Why a PolicyClient with an openTimeout of 200 ms over `client` could not connect. */
  const firstConnectError = (client: ClientTransport["Service"]) =>
    Effect.map(
      Effect.exit(PolicyClient.make({ quiet: true, openTimeout: 200 }).pipe(Effect.provideService(ClientTransport, client))),
      failure
    )

  it.live("the attempt's own verdict at its deadline is the outcome, even when the client's backstop is due too", () =>
    Effect.gen(function*() {
      // A transport that takes ConnectTimeout as ours do: at the deadline it
      // says what it saw, a few loop turns later (after the I/O due by then).
      const client = ClientTransport.of({
        address: "stalled://robot",
        connect: Effect.flatMap(ConnectTimeout, (budget) =>
          Effect.callback<Connection, TransportError>((resume) => {
            const millis = budget === undefined ? 10_000 : Duration.toMillis(budget)
            const deadline = setTimeout(() =>
              setImmediate(() =>
                setImmediate(() =>
                  resume(Effect.fail(saidNothing("stalled://robot")))
                )
              ), millis)
            // the process stalls past that deadline and the backstop after it (100 ms later)
            const stall = setTimeout(() => {
              const until = performance.now() + millis + 400
              while (performance.now() < until) { /* a busy machine */ }
            }, 10)
            return Effect.sync(() => {
              clearTimeout(deadline)
              clearTimeout(stall)
            })
          }))
      })
      const error = yield* firstConnectError(client)
      expect(error).toMatchObject({ reason: "Silent", detail: "said nothing" })
    }).pipe(Effect.scoped))

  it.live("an attempt still closing when the backstop is due: its error is the outcome", () =>
    Effect.gen(function*() {
      // fails at its deadline, then takes 300 ms to close what it opened
      const client = ClientTransport.of({
        address: "slow-close://robot",
        connect: Effect.gen(function*() {
          const budget = yield* ConnectTimeout
          yield* Effect.addFinalizer(() => Effect.sleep("300 millis"))
          yield* Effect.sleep(budget ?? Duration.seconds(10))
          return yield* Effect.fail(saidNothing("slow-close://robot"))
        })
      })
      const error = yield* firstConnectError(client)
      expect(error).toMatchObject({ reason: "Silent", detail: "said nothing" })
    }).pipe(Effect.scoped))

  it.live("a transport that ignores the caller's deadline is given up on by the backstop, which says so", () =>
    Effect.gen(function*() {
      const client = ClientTransport.of({ address: "deaf://robot", connect: Effect.never })
      const error = yield* firstConnectError(client)
      expect(error).toMatchObject({ reason: "Unavailable", address: "deaf://robot", detail: "no connection within 200ms" })
    }).pipe(Effect.scoped))

  it.effect("between attempts, the backstop names the last one's error (a long retryInterval)", () =>
    Effect.gen(function*() {
      let n = 0
      const client = ClientTransport.of({
        address: "refusing://robot",
        connect: Effect.suspend(() =>
          Effect.fail(new TransportError({ reason: "Unavailable", address: "refusing://robot", detail: `refused #${++n}` }))
        )
      })
      const making = yield* Effect.forkChild(Effect.exit(
        PolicyClient.make({ quiet: true, openTimeout: 500, retryInterval: "2 seconds" }).pipe(
          Effect.provideService(ClientTransport, client)
        )
      ))
      yield* advanceTo(1000, 50)
      const error = failure(yield* Fiber.join(making))
      expect(error).toMatchObject({ reason: "Unavailable", detail: "no connection within 500ms (last attempt: refused #1)" })
    }).pipe(Effect.scoped))
})
