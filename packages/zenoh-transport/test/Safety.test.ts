// Issue 10's robot-side safety over Zenoh, on real loopback sockets: the
// action gate and the connection logs and hooks every transport owes
// (@chiral/testing/SafetyContract), each peer session a connection named by
// its zid. A token is not part of Zenoh's protocol (see the README): nothing
// to test here. Every wait is on a condition.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import { ClientTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { row, takeActions } from "@chiral/testing/DispatchContract"
import * as Robot from "@chiral/testing/Robot"
import { serverSafetyContract } from "@chiral/testing/SafetyContract"
import { ZenohTransport } from "../src/index.js"

/**
 * Raw chiral connections: the dispatcher on this thread, so one peer session
 * each. A raw connect is not retried: its probe waits 5 s for an answer, as a
 * busy machine can stall this process for seconds meanwhile.
 */
const clientOptions = { probeInterval: 50, probeTimeout: 5000, thread: "main", lease: 60_000 } as const

serverSafetyContract({
  name: "Zenoh",
  transports: Layer.unwrap(
    Effect.map(ServerTransport, (server) => Layer.succeed(ClientTransport, ZenohTransport.makeClient(server.address, clientOptions)))
  ).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 }))),
  clientVia: (port) => ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, clientOptions),
  connectionId: /^tcp\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+ \(chiral\/c2s, zid [0-9a-f]+\)$/
})

// Our client's dispatcher publishes on a session of its own, whose zid is the
// client session's sibling: the server treats the two as one client.
describe("Zenoh: a client's dispatcher session and its own are one client to the server", () => {
  const sessions = Layer.unwrap(
    Effect.map(ServerTransport, (server) =>
      Layer.succeed(ClientTransport, ZenohTransport.makeClient(server.address, { probeInterval: 50, thread: "worker" })))
  ).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 })))

  it.live("with a single controller, the client whose dispatcher has control resets the robot; its sendAction is applied", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          proprios: Robot.proprios,
          singleController: true,
          handlers: Robot.handlers(recorder)
        })
        const client = yield* PolicyClient.make({ quiet: true, requestTimeout: "20 seconds", resetTimeout: "20 seconds" })
        yield* client.getObs
        yield* client.putActions([1, 2].map(row))
        yield* client.startActionDispatch(50)
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 2), [1, 2])
        // two sessions: the dispatcher's, which sent the actions and has control, and the client's own,
        // on which the reset and sendAction go
        assert.strictEqual(yield* server.connections, 2)
        assert.isDefined(yield* server.controller)
        yield* client.reset
        assert.strictEqual(yield* Ref.get(recorder.resets), 1)
        yield* client.sendAction(row(3))
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 1), [3])
        assert.deepStrictEqual((yield* server.actionStats).dropped.notController, 0)
        assert.deepStrictEqual(logs.lines.filter((l) => l.includes("refused")), [])
      }).pipe(Effect.provide(logs.layer))
    }).pipe(Effect.scoped, Effect.provide(sessions)), 60_000)

  it.live("without one, its sendAction and its queued actions are not said to interleave", () =>
    Effect.gen(function*() {
      const logs = yield* Robot.captureLogs
      yield* Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        yield* PolicyServer.make({ cameras: Robot.cameras, proprios: Robot.proprios, handlers: Robot.handlers(recorder) })
        const client = yield* PolicyClient.make({ quiet: true, requestTimeout: "20 seconds" })
        yield* client.getObs
        yield* client.sendAction(row(0))
        yield* client.putActions([1, 2].map(row))
        yield* client.startActionDispatch(50)
        // two sessions, two TCP connections: 0 and 1 may arrive in either order
        assert.deepStrictEqual([...(yield* takeActions(recorder.actions, 3))].sort(), [0, 1, 2])
        assert.deepStrictEqual(logs.lines.filter((l) => l.includes("interleave")), [])
      }).pipe(Effect.provide(logs.layer))
    }).pipe(Effect.scoped, Effect.provide(sessions)), 60_000)
})
