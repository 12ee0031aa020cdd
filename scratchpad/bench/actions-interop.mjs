// Off-thread dispatch against another server: 5 actions at 20 Hz (the server prints what it applies).
import { NodeRuntime } from "@effect/platform-node"
import { Effect, SubscriptionRef } from "effect"
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
const prog = Effect.gen(function*() {
  const client = yield* PolicyClient.make({ quiet: true })
  yield* client.getObs
  yield* client.putActions([1, 2, 3, 4, 5].map((v) => [v / 10, 0, 0, 0, 0, 0, -v]))
  yield* client.startActionDispatch(20)
  yield* Effect.sleep(400)
  console.log("dispatched", yield* SubscriptionRef.get(client.dispatched))
}).pipe(Effect.scoped, Effect.provide(WebSocketTransport.layerClient(process.argv[2])))
NodeRuntime.runMain(prog)
