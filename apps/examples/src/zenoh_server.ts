/**
 * The example robot of server.ts, served over Zenoh as chiral's
 * examples/python/zenoh_server_example.py does: a Zenoh peer listening on
 * tcp/0.0.0.0:7447, requests on `chiral/c2s`, answers on `chiral/s2c`.
 * Only the transport Layer differs from the WebSocket example.
 *
 *     npx node apps/examples/dist/zenoh_server.js [port] [host]    # default 7447 0.0.0.0
 */
import "./NodeVersion.js" // first: see there
import { ZenohTransport } from "@chiral/zenoh-transport"
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { program } from "./server.js"

export const serve = (port: number, host: string) =>
  program.pipe(Effect.provide(ZenohTransport.layerServer({ host, port })))

if (import.meta.main) {
  const [port = "7447", host = "0.0.0.0"] = process.argv.slice(2)
  NodeRuntime.runMain(serve(Number(port), host))
}
