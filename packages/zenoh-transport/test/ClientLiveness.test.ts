// Issue 10's client-side safety over Zenoh, on real sockets: a frozen server
// is noticed by its lease (the waiting request fails with Disconnected, the
// dispatcher stops, queued actions are dropped, never sent later: the server
// gets at most what was handed to the connection before); a server
// that is replaced is reconnected to by itself, the obs stream and the
// dispatcher carry on and old actions never reach the new server. With the
// dispatcher on a worker thread and on the main thread. Every wait is on a
// condition; the test's own timeout is the only clock.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Queue, Ref, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import { ClientTransport, PolicyClient, ServerTransport } from "@chiral/core"
import { ZenohTransport } from "../src/index.js"
import { takeActions } from "@chiral/testing/DispatchContract"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import { relayTo } from "@chiral/testing/Relay"
import * as Robot from "@chiral/testing/Robot"

const row = (v: number) => [v, 0, 0, 0, 0, 0, 0]
const portOf = (address: string) => Number(address.split(":").pop())

/** Waits until `check` holds, looking whenever `ref` changes. */
const until = <A>(ref: SubscriptionRef.SubscriptionRef<A>, check: (a: A) => boolean) =>
  SubscriptionRef.changes(ref).pipe(Stream.filter(check), Stream.runHead, Effect.asVoid)

/** Waits (polling, bounded by the test's timeout) until `check` holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(5) }), Effect.orDie)

/**
 * The server announces a lease of 0.8 s: a client gives up a server silent
 * for that long. Clients announce a long one: the server's side of the held
 * relay then ends only when the relay cuts it.
 */
const lease = 800
const clientLease = 60_000

/** The test robot on a Zenoh server of its own scope (closing it is the server going away). */
const serveRobot = (recorder: Robot.Recorder) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const transport = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0, lease }).pipe(Scope.provide(scope))
    const { server } = yield* Pair.startServerOnlyWith(recorder).pipe(
      Effect.provideService(ServerTransport, transport),
      Scope.provide(scope)
    )
    return { scope, server, port: portOf(transport.address) }
  })

const clientVia = (port: number, thread: "worker" | "main", options: PolicyClient.PolicyClientOptions = {}) =>
  PolicyClient.make({ quiet: true, ...options }).pipe(
    Effect.provideService(
      ClientTransport,
      ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, {
        thread,
        lease: clientLease,
        probeInterval: 50,
        // a held relay accepts connections and says nothing: give such an attempt up sooner
        handshakeTimeout: 3000
      })
    )
  )

for (const thread of ["worker", "main"] as const) {
  describe(`Zenoh client liveness, dispatcher on the ${thread} thread`, () => {
    it.live("a frozen server is noticed by its lease: the waiting request and later ones fail with Disconnected, the dispatcher stops, queued actions are dropped", () =>
      Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const robot = yield* serveRobot(recorder)
        const relay = yield* relayTo(robot.port)
        const client = yield* clientVia(relay.port, thread, { reconnect: false })
        yield* client.getObs
        const total = 1000
        yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
        yield* client.startActionDispatch(100)
        assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [0, 1, 2])

        yield* relay.hold()
        // waits for an answer that cannot come; fails once the lease expires, long before its 30 s timeout
        const error = failure(yield* Effect.exit(client.getObs))
        assert.strictEqual(error._tag, "RequestError")
        assert.strictEqual(error.reason, "Disconnected")
        assert.include(error.detail, "silent for its lease of 800 ms")
        assert.strictEqual(yield* SubscriptionRef.get(client.connectionState), "closed")
        assert.strictEqual(failure(yield* Effect.exit(client.getMetadata)).reason, "Disconnected")
        assert.strictEqual(failure(yield* Effect.exit(client.putActions([row(-1)]))).reason, "Disconnected")

        // every action was either handed to the connection before it was given up, or dropped
        yield* eventually(Effect.map(
          Effect.all([SubscriptionRef.get(client.dispatched), Effect.map(client.droppedActions, (d) => d.disconnected)]),
          ([sent, dropped]) => sent + dropped === total
        ))
        const sent = yield* SubscriptionRef.get(client.dispatched)
        assert.isAbove((yield* client.droppedActions).disconnected, 0)
        assert.strictEqual(yield* client.pendingActions, 0)

        // The connection goes: whatever reached the server is what was handed
        // to the connection before it was given up, in order; nothing after.
        yield* relay.cut()
        yield* eventually(Effect.map(robot.server.connections, (n) => n === 0))
        const arrived: Array<number> = []
        for (;;) {
          const next = yield* Queue.poll(recorder.actions)
          if (Option.isNone(next)) break
          arrived.push(next.value.action.data[0] as number)
        }
        assert.deepStrictEqual(arrived, Array.from({ length: arrived.length }, (_, i) => i + 3))
        assert.isAtMost(arrived.length, sent - 3)
      }).pipe(Effect.scoped), 60_000)

    it.live("when the server is replaced the client reconnects by itself; the obs stream and the dispatcher carry on, old actions never reach the new server", () =>
      Effect.gen(function*() {
        const before = yield* Robot.makeRecorder
        const first = yield* serveRobot(before)
        const relay = yield* relayTo(first.port)
        const client = yield* clientVia(relay.port, thread)
        const total = 1000
        yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
        yield* client.startActionDispatch(50)
        yield* client.startObsStream(50)
        assert.deepStrictEqual(yield* takeActions(before.actions, 3), [0, 1, 2])

        const after = yield* Robot.makeRecorder
        const second = yield* serveRobot(after)
        yield* relay.hold()
        yield* relay.retarget(second.port)
        yield* Scope.close(first.scope, Exit.void)
        yield* relay.cut()
        yield* client.awaitDisconnect
        // nothing can be queued for a later connection
        assert.strictEqual(failure(yield* Effect.exit(client.putActions([row(-1)]))).reason, "Disconnected")
        assert.strictEqual(failure(yield* Effect.exit(client.getObs)).reason, "Disconnected")
        yield* eventually(Effect.map(
          Effect.all([SubscriptionRef.get(client.dispatched), Effect.map(client.droppedActions, (d) => d.disconnected)]),
          ([sent, dropped]) => sent + dropped === total
        ))
        const sentBefore = yield* SubscriptionRef.get(client.dispatched)

        yield* relay.release()
        yield* until(client.connectionState, (s) => s === "connected")
        assert.isAtLeast(yield* SubscriptionRef.get(client.reconnects), 1)
        yield* client.putActions([5000, 5001, 5002].map(row))
        // the dispatcher runs on the new connection at its rate: only the new actions arrive there
        assert.deepStrictEqual(yield* takeActions(after.actions, 3), [5000, 5001, 5002])
        yield* until(client.dispatched, (n) => n === sentBefore + 3)
        // the obs stream asks the new server
        yield* eventually(Effect.map(Ref.get(after.obsRequests), (requests) => requests.length >= 3))
        yield* Scope.close(second.scope, Exit.void)
      }).pipe(Effect.scoped), 60_000)
  })
}

describe("Zenoh client: a deadline for connecting", () => {
  it.live("a port that accepts and says nothing is Silent within the caller's openTimeout", () =>
    Effect.gen(function*() {
      const recorder = yield* Robot.makeRecorder
      const robot = yield* serveRobot(recorder)
      const relay = yield* relayTo(robot.port)
      yield* relay.hold()
      const exit = yield* Effect.exit(
        PolicyClient.make({ quiet: true, openTimeout: 10_000 }).pipe(
          Effect.provideService(ClientTransport, ZenohTransport.makeClient(`tcp/127.0.0.1:${relay.port}`))
        )
      )
      const error = failure(exit)
      assert.strictEqual(error.reason, "Silent")
    }).pipe(Effect.scoped))
})
