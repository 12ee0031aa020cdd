// A TCP server on 127.0.0.1 that accepts connections, reads what comes and
// never answers: what a client meets at a port that is not chiral's (another
// service, a Zenoh port asked for WebSocket) or at a frozen server.
import * as Net from "node:net"
import { Effect, type Scope } from "effect"

/** Listens on a free loopback port until the scope ends; its port. */
export const listen: Effect.Effect<number, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => socket.on("error", () => {}))
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.close())
  ),
  (server) => (server.address() as Net.AddressInfo).port
)
