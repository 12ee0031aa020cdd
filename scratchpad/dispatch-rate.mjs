// How fast does PolicyClient.startActionDispatch(10) really send? Prints the send times (ms since
// start) of 30 queued actions; at 10 Hz they should be ~100 ms apart. Evidence for the Cadence.fixed
// double tick in /work/notes/core-requests.md §1 (pairs like "2600 2602").
//   npx tsc -b && npx node scratchpad/dispatch-rate.mjs ws://127.0.0.1:PORT [obsHz]
// against e.g. `npx chiral serve --host 127.0.0.1 --port PORT --cameras 2 --size 64x48`.
import { PolicyClient } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Stream, SubscriptionRef } from "effect"

const [uri = "ws://127.0.0.1:8765", obsHz = "0"] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const client = yield* PolicyClient.PolicyClient
  yield* client.reset
  if (Number(obsHz) > 0) yield* client.startObsStream(Number(obsHz))
  yield* client.putActions(Array.from({ length: 30 }, () => new Float32Array(7)))
  const start = performance.now()
  yield* client.startActionDispatch(10)
  const times = []
  yield* SubscriptionRef.changes(client.dispatched).pipe(
    Stream.tap(() => Effect.sync(() => times.push(performance.now() - start))),
    Stream.takeUntil((sent) => sent >= 30),
    Stream.runDrain
  )
  yield* Console.log(times.map((t) => t.toFixed(0)).join(" "))
}).pipe(
  Effect.scoped,
  Effect.provide(PolicyClient.PolicyClient.layer().pipe(Layer.provide(WebSocketTransport.layerClient(uri))))
)

NodeRuntime.runMain(program)
