// A TCP relay in front of a server, for tests of connections that end without
// a word or go silent: `cut` destroys the sockets of one relayed connection
// (by arrival order) or of all, on both sides, as a crash or a pulled cable
// would; `hold` stops forwarding without closing anything, as a frozen
// (SIGSTOPped) server or a half-open connection looks from the other end:
// bytes are accepted by the kernel and go nowhere until `release`;
// `retarget` sends new connections to another server.
import * as Net from "node:net"
import { Effect } from "effect"

interface Pair {
  readonly inbound: Net.Socket
  readonly outbound: Net.Socket
  held: boolean
}

const stop = (pair: Pair) => {
  if (pair.held) return
  pair.held = true
  pair.inbound.unpipe(pair.outbound)
  pair.outbound.unpipe(pair.inbound)
  pair.inbound.pause()
  pair.outbound.pause()
}

const forward = (pair: Pair) => {
  if (!pair.held) return
  pair.held = false
  pair.inbound.pipe(pair.outbound)
  pair.outbound.pipe(pair.inbound)
}

interface State {
  port: number
  server: Net.Server
  readonly pairs: Array<Pair>
  frozen: boolean
  target: number
}

export const relayTo = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<State>(
      (resume) => {
        const pairs: Array<Pair> = []
        const relay: State = { port: 0, server: undefined as unknown as Net.Server, pairs, frozen: false, target: port }
        relay.server = Net.createServer((inbound) => {
          const outbound = Net.connect({ host: "127.0.0.1", port: relay.target })
          for (const s of [inbound, outbound]) s.on("error", () => {})
          const pair: Pair = { inbound, outbound, held: true }
          pairs.push(pair)
          if (relay.frozen) {
            inbound.pause()
            outbound.pause()
          } else forward(pair)
        })
        relay.server.listen(0, "127.0.0.1", () => {
          relay.port = (relay.server.address() as Net.AddressInfo).port
          resume(Effect.succeed(relay))
        })
      }
    ),
    ({ pairs, server }) =>
      Effect.sync(() => {
        for (const pair of pairs) for (const s of [pair.inbound, pair.outbound]) s.destroy()
        server.close()
      })
  ).pipe(Effect.map((relay) => {
    const chosen = (n: number | undefined) => n === undefined ? relay.pairs : relay.pairs.slice(n, n + 1)
    return {
      port: relay.port,
      /** Connections relayed so far. */
      connections: Effect.sync(() => relay.pairs.length),
      /** Cuts connection `n` (0: the first relayed), or every one. */
      cut: (n?: number) =>
        Effect.sync(() => {
          for (const pair of chosen(n)) for (const s of [pair.inbound, pair.outbound]) s.destroy()
        }),
      /**
       * Stops forwarding on connection `n`, or on every one: those open now
       * and, until `release()`, those that arrive (accepted, never answered).
       */
      hold: (n?: number) =>
        Effect.sync(() => {
          if (n === undefined) relay.frozen = true
          for (const pair of chosen(n)) stop(pair)
        }),
      /** Sends the connections that arrive from now on to `port` (a server replaced by another). */
      retarget: (port: number) =>
        Effect.sync(() => {
          relay.target = port
        }),
      /** Forwards again what `hold` stopped (what waited is delivered). */
      release: (n?: number) =>
        Effect.sync(() => {
          if (n === undefined) relay.frozen = false
          for (const pair of chosen(n)) forward(pair)
        })
    }
  }))
