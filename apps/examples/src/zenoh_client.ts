/**
 * The example policy of client.ts over Zenoh, as chiral's
 * examples/python/zenoh_client_example.py: a Zenoh peer connecting to
 * tcp/host:7447. Only the transport Layer differs from the WebSocket example.
 *
 *     npx node apps/examples/dist/zenoh_client.js [tcp/host:port] [actions]    # default tcp/127.0.0.1:7447 200
 */
import "./NodeVersion.js" // first: see there
import { ZenohTransport } from "@chiral/zenoh-transport"
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { program } from "./client.js"

export const run = (uri: string, total?: number) =>
  program(total).pipe(Effect.provide(ZenohTransport.layerClient(uri)))

if (import.meta.main) {
  const [uri = "tcp/127.0.0.1:7447", actions = "200"] = process.argv.slice(2)
  NodeRuntime.runMain(run(uri, Number(actions)))
}
