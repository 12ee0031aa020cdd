// Issue 10's robot-side safety over Zenoh, on real loopback sockets: the
// action gate and the connection logs and hooks every transport owes
// (@chiral/testing/SafetyContract), each peer session a connection named by
// its zid. A token is not part of Zenoh's protocol (see the README): nothing
// to test here. Every wait is on a condition.
import { Effect, Layer } from "effect"
import { ClientTransport, ServerTransport } from "@chiral/core"
import { serverSafetyContract } from "@chiral/testing/SafetyContract"
import { ZenohTransport } from "../src/index.js"

/** Raw chiral connections: the dispatcher on this thread, so one peer session each. */
const clientOptions = { probeInterval: 50, thread: "main", lease: 60_000 } as const

serverSafetyContract({
  name: "Zenoh",
  transports: Layer.unwrap(
    Effect.map(ServerTransport, (server) => Layer.succeed(ClientTransport, ZenohTransport.makeClient(server.address, clientOptions)))
  ).pipe(Layer.provideMerge(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 }))),
  clientVia: (port) => ZenohTransport.makeClient(`tcp/127.0.0.1:${port}`, clientOptions),
  connectionId: /^tcp\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+ \(chiral\/c2s, zid [0-9a-f]+\)$/
})
