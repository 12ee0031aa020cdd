// A TCP relay in front of a server, for tests of connections that end without
// a word: `cut` destroys the sockets of one relayed connection (by arrival
// order) or of all, on both sides, as a crash or a pulled cable would.
import * as Net from "node:net"
import { Effect } from "effect"

export const relayTo = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly server: Net.Server; readonly pairs: Array<Array<Net.Socket>> }>(
      (resume) => {
        const pairs: Array<Array<Net.Socket>> = []
        const server = Net.createServer((inbound) => {
          const outbound = Net.connect({ host: "127.0.0.1", port })
          for (const s of [inbound, outbound]) s.on("error", () => {})
          inbound.pipe(outbound)
          outbound.pipe(inbound)
          pairs.push([inbound, outbound])
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, server, pairs })))
      }
    ),
    ({ pairs, server }) =>
      Effect.sync(() => {
        for (const pair of pairs) for (const s of pair) s.destroy()
        server.close()
      })
  ).pipe(Effect.map((relay) => ({
    port: relay.port,
    /** Connections relayed so far. */
    connections: Effect.sync(() => relay.pairs.length),
    /** Cuts connection `n` (0: the first relayed), or every one. */
    cut: (n?: number) =>
      Effect.sync(() => {
        for (const pair of n === undefined ? relay.pairs : [relay.pairs[n] ?? []]) for (const s of pair) s.destroy()
      })
  })))
