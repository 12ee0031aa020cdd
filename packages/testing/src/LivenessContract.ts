// What PolicyClient owes its caller when the server goes silent or away,
// over any transport, on real loopback connections through a relay (`hold`
// is a frozen server, `cut` one gone): the waiting request and later ones
// fail with Disconnected, the dispatcher stops and drops what it held, and
// nothing is sent later; a server that is replaced is reconnected to by
// itself, the obs stream and the dispatcher carry on and old actions never
// reach the new server. With the dispatcher on a worker thread and on the
// main thread. Registered once per transport by its ClientLiveness tests,
// beside the tests that only it has (how it notices silence). Every wait is
// on a condition (a count, a state, an exit); the test's own timeout is the
// only clock.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Queue, Ref, References, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import { ClientTransport, PolicyClient, ServerTransport } from "@chiral/core"
import { row, takeActions } from "./DispatchContract.js"
import { failure } from "./Exits.js"
import * as Pair from "./Pair.js"
import { relayTo } from "./Relay.js"
import * as Robot from "./Robot.js"
import { portOf } from "./SafetyContract.js"

export type Thread = "worker" | "main"

/** A transport as the client-side contract uses it. */
export interface LivenessTransport {
  /** Its name in the tests' titles ("WebSocket"). */
  readonly name: string
  /** A server on a free loopback port, in the scope it is given. */
  readonly server: Effect.Effect<ServerTransport["Service"], unknown, Scope.Scope>
  /**
   * A client reaching a server at `port` on 127.0.0.1 (a relay in front of
   * it), with its dispatcher on `thread`. It gives up a silent server within a
   * second or so, unless `patient`: then only well after 200 ms (a request's
   * timeout in the tests) have passed.
   */
  readonly clientVia: (port: number, options: { readonly thread: Thread; readonly patient?: boolean }) => ClientTransport["Service"]
  /** What the client says of a server it gave up for its silence (in the request's error and the dispatcher's log). */
  readonly silence: string
  /**
   * What the frozen-server test does once the client gave the connection up,
   * and what it expects of the actions written to it before: "delivered": the
   * relay moves again, all of them arrive, then the server sees the connection
   * end; "cut": the relay is cut (the server would keep the session until the
   * client's lease ends), and what arrived is a prefix of them, in order.
   */
  readonly heldActions: "delivered" | "cut"
}

/** Waits until `check` holds, looking whenever `ref` changes. */
const until = <A>(ref: SubscriptionRef.SubscriptionRef<A>, check: (a: A) => boolean) =>
  SubscriptionRef.changes(ref).pipe(Stream.filter(check), Stream.runHead, Effect.asVoid)

/** Waits (polling, bounded by the test's timeout) until `check` holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  check.pipe(Effect.filterOrFail((ok) => ok), Effect.retry({ schedule: Schedule.spaced(5) }), Effect.orDie)

/**
 * Every action put was either sent or dropped: as disconnected, or (due while
 * the frozen server left a request unanswered beyond the client's
 * maxRobotSilence) as robotSilent.
 */
const allAccountedFor = (client: PolicyClient.PolicyClientApi, total: number) =>
  eventually(Effect.map(
    Effect.all([
      SubscriptionRef.get(client.dispatched),
      Effect.map(client.droppedActions, (d) => d.disconnected + d.robotSilent)
    ]),
    ([sent, dropped]) => sent + dropped === total
  ))

/** The actions that have arrived, without waiting. */
const arrivedSoFar = (recorder: Robot.Recorder) =>
  Effect.gen(function*() {
    const arrived: Array<number> = []
    for (;;) {
      const next = yield* Queue.poll(recorder.actions)
      if (Option.isNone(next)) return arrived
      arrived.push(Number(next.value.action.data[0]))
    }
  })

/** Registers the client-side liveness tests over `transport`. */
export const clientLivenessContract = (transport: LivenessTransport) => {
  /**
   * The test robot on a server of its own scope (closing it is the server
   * going away), which closes with the test's at the latest.
   */
  const serveRobot = (recorder: Robot.Recorder) =>
    Effect.gen(function*() {
      const scope = yield* Scope.fork(yield* Effect.scope)
      const server = yield* Scope.provide(transport.server, scope)
      const robot = yield* Pair.startServerOnlyWith(recorder).pipe(
        Effect.provideService(ServerTransport, server),
        Scope.provide(scope)
      )
      return { scope, server: robot.server, port: portOf(server.address) }
    })

  const clientVia = (
    port: number,
    options: { readonly thread: Thread; readonly patient?: boolean },
    client: PolicyClient.PolicyClientOptions = {}
  ) =>
    PolicyClient.make({ quiet: true, ...client }).pipe(
      Effect.provideService(ClientTransport, transport.clientVia(port, options))
    )

  for (const thread of ["worker", "main"] as const) {
    describe(`${transport.name} client liveness, dispatcher on the ${thread} thread`, () => {
      it.live("a frozen server is noticed: the waiting request and later ones fail with Disconnected, the dispatcher stops, queued actions are dropped", () =>
        Effect.gen(function*() {
          const logs = yield* Robot.captureLogs
          yield* Effect.gen(function*() {
            const recorder = yield* Robot.makeRecorder
            const robot = yield* serveRobot(recorder)
            const relay = yield* relayTo(robot.port)
            const client = yield* clientVia(relay.port, { thread }, { reconnect: false })
            yield* client.getObs
            const total = 1000
            yield* client.putActions(Array.from({ length: total }, (_, i) => row(i)))
            yield* client.startActionDispatch(100)
            assert.deepStrictEqual(yield* takeActions(recorder.actions, 3), [0, 1, 2])

            yield* relay.hold()
            // waits for an answer that cannot come; fails once the silence is noticed, long before its 30 s timeout
            const error = failure(yield* Effect.exit(client.getObs))
            assert.strictEqual(error._tag, "RequestError")
            assert.strictEqual(error.reason, "Disconnected")
            assert.include(error.detail, transport.silence)
            assert.strictEqual(yield* SubscriptionRef.get(client.connectionState), "closed")
            assert.strictEqual(failure(yield* Effect.exit(client.getMetadata)).reason, "Disconnected")
            assert.strictEqual(failure(yield* Effect.exit(client.putActions([row(-1)]))).reason, "Disconnected")

            // every action was either handed to the connection before it was given up, or dropped
            yield* allAccountedFor(client, total)
            const sent = yield* SubscriptionRef.get(client.dispatched)
            assert.isAbove((yield* client.droppedActions).disconnected, 0)
            assert.strictEqual(yield* client.pendingActions, 0)

            const after = Array.from({ length: sent - 3 }, (_, i) => i + 3)
            if (transport.heldActions === "delivered") {
              // The server resumes: what was written to the dead connection (held
              // in the relay as in a frozen server's kernel buffers) arrives, the
              // connection ends, and nothing else ever comes.
              yield* relay.release()
              assert.deepStrictEqual(yield* takeActions(recorder.actions, sent - 3), after)
              yield* eventually(Effect.map(robot.server.connections, (n) => n === 0))
              assert.isTrue(Option.isNone(yield* Queue.poll(recorder.actions)))
            } else {
              // The connection goes: whatever reached the server is what was handed
              // to the connection before it was given up, in order; nothing after.
              yield* relay.cut()
              yield* eventually(Effect.map(robot.server.connections, (n) => n === 0))
              const arrived = yield* arrivedSoFar(recorder)
              assert.deepStrictEqual(arrived, after.slice(0, arrived.length))
            }
          }).pipe(
            Effect.scoped,
            Effect.provide(logs.layer),
            // the dispatcher's scheduling is logged at debug level
            Effect.provideService(References.MinimumLogLevel, "Debug")
          )
          const stopped = logs.lines.filter((l) => l.includes("action dispatch") && l.includes("stopped"))
          assert.strictEqual(stopped.length, 1, logs.lines.join("\n"))
          assert.include(stopped[0], thread === "worker" ? "on its worker thread" : "on this thread")
          assert.include(stopped[0], transport.silence)
          assert.match(stopped[0]!, /; \d+ queued actions dropped$/)
          // the worker said once how it is scheduled (one connection, so one worker)
          const scheduled = logs.lines.filter((l) => l.includes("action dispatch: its worker thread runs"))
          assert.strictEqual(scheduled.length, thread === "worker" ? 1 : 0, logs.lines.join("\n"))
          if (thread === "worker") assert.match(scheduled[0]!, /runs (real-time \(SCHED_FIFO 1\)|at nice -?\d+|at normal priority)/)
        }))

      it.live("when the server is replaced the client reconnects by itself; the obs stream and the dispatcher carry on, old actions never reach the new server", () =>
        Effect.gen(function*() {
          // The client reaches the server through a relay, which sends new
          // connections to the second server before the first one closes: the
          // client's reconnection cannot land on the first one while it shuts down.
          const before = yield* Robot.makeRecorder
          const first = yield* serveRobot(before)
          const relay = yield* relayTo(first.port)
          const client = yield* clientVia(relay.port, { thread })
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
          yield* allAccountedFor(client, total)
          const sentBefore = yield* SubscriptionRef.get(client.dispatched)

          yield* relay.release()
          yield* until(client.connectionState, (s) => s === "connected")
          assert.strictEqual(yield* SubscriptionRef.get(client.reconnects), 1)
          // acting on what the new connection shows: the old robot's observation was forgotten
          yield* until(client.latestObs, Option.isSome)
          yield* client.putActions([5000, 5001, 5002].map(row))
          // the dispatcher runs on the new connection at its rate: only the new actions arrive there
          assert.deepStrictEqual(yield* takeActions(after.actions, 3), [5000, 5001, 5002])
          yield* until(client.dispatched, (n) => n === sentBefore + 3)
          // the obs stream asks the new server
          yield* eventually(Effect.map(Ref.get(after.obsRequests), (requests) => requests.length >= 3))
          yield* Scope.close(second.scope, Exit.void)
        }).pipe(Effect.scoped))
    })
  }

  describe(`${transport.name} client liveness`, () => {
    it.live("an obs stream whose requests timed out while the server was frozen carries on after the reconnection", () =>
      Effect.gen(function*() {
        const recorder = yield* Robot.makeRecorder
        const robot = yield* serveRobot(recorder)
        const relay = yield* relayTo(robot.port)
        const client = yield* clientVia(relay.port, { thread: "worker", patient: true }, { requestTimeout: 200 })
        yield* client.startObsStream(20)
        yield* client.observations.pipe(Stream.take(2), Stream.runDrain)
        // frozen for longer than a request's timeout, until the client gives the connection up
        yield* relay.hold()
        yield* until(client.connectionState, (s) => s === "reconnecting")
        yield* relay.release()
        yield* until(client.connectionState, (s) => s === "connected")
        const before = (yield* Ref.get(recorder.obsRequests)).length
        yield* eventually(Effect.map(Ref.get(recorder.obsRequests), (requests) => requests.length >= before + 3))
      }).pipe(Effect.scoped))
  })
}
