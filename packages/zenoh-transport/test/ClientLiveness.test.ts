// Issue 10's client-side safety over Zenoh, on real sockets: what every
// transport owes PolicyClient (@chiral/testing/LivenessContract: a frozen
// server noticed, here by its lease; reconnection after a server is
// replaced; actions that never outlive their connection, with the dispatcher
// on a worker thread and on the main thread), and a deadline for connecting
// to a port that says nothing. Every wait is on a condition; the test's own
// timeout is the only clock.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ClientTransport, PolicyClient, ServerTransport } from "@chiral/core"
import { ZenohTransport } from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import { clientLivenessContract } from "@chiral/testing/LivenessContract"
import * as Pair from "@chiral/testing/Pair"
import { relayTo } from "@chiral/testing/Relay"
import * as Robot from "@chiral/testing/Robot"

const portOf = (address: string) => Number(address.split(":").pop())

/**
 * The server announces a lease of 2 s: a client gives up a server silent for
 * that long (longer than a busy machine stalls this process, where the server
 * runs beside the client's worker threads; the robot's silence is noticed
 * after 1 s meanwhile). Clients announce a long one: the server's side of the
 * held relay then ends only when the relay cuts it.
 */
const lease = 2000
const clientLease = 60_000

clientLivenessContract({
  name: "Zenoh",
  server: ZenohTransport.makeServer({ host: "127.0.0.1", port: 0, lease }),
  // the server's lease decides when a client gives it up
  clientVia: (port, { thread }) =>
    ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, {
      thread,
      lease: clientLease,
      probeInterval: 50,
      // a held relay accepts connections and says nothing: give such an attempt up sooner
      handshakeTimeout: 3000
    }),
  silence: "silent for its lease of 2000 ms",
  heldActions: "cut"
})

/** The test robot on a Zenoh server, in the test's scope. */
const serveRobot = (recorder: Robot.Recorder) =>
  Effect.gen(function*() {
    const transport = yield* ZenohTransport.makeServer({ host: "127.0.0.1", port: 0, lease })
    yield* Pair.startServerOnlyWith(recorder).pipe(Effect.provideService(ServerTransport, transport))
    return { port: portOf(transport.address) }
  })

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
