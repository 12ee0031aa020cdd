/**
 * An in-process transport for tests: one `ServerTransport` and any number of
 * clients connected through bounded queues. A full queue suspends the sender,
 * so a client that stops reading slows only its own connection, as TCP would.
 */
import { Cause, Effect, FiberSet, Layer, Queue, Stream } from "effect"
import { ClientTransport, type Connection, frameBytes, type OutgoingFrame, ServerTransport } from "./Transport.js"
import { TransportError } from "./TransportError.js"

export interface MemoryOptions {
  /** Name used in logs and errors. Default `memory://chiral`. */
  readonly address?: string | undefined
  /** Frames buffered per direction and connection before a sender waits. Default 16. */
  readonly capacity?: number | undefined
}

type Pipe = Queue.Queue<Uint8Array, Cause.Done>

interface Hub {
  accept: ((connection: Connection, close: Effect.Effect<void>) => void) | undefined
  nextId: number
}

const endpoint = (id: string, inbound: Pipe, outbound: Pipe, address: string, peer?: string): Connection => ({
  id,
  peer,
  frames: Stream.fromQueue(inbound),
  send: (frame: OutgoingFrame) =>
    // Copy, as a socket would: the receiver must not see later writes to the sender's buffers.
    Effect.flatMap(Queue.offer(outbound, frameBytes(frame).slice()), (accepted) =>
      accepted
        ? Effect.void
        : Effect.fail(new TransportError({ reason: "Closed", address, detail: "connection is closed" })))
})

/** A server transport and a client transport that reach it, sharing one in-memory hub. */
export const make = (options: MemoryOptions = {}): {
  readonly server: ServerTransport["Service"]
  readonly client: ClientTransport["Service"]
} => {
  const address = options.address ?? "memory://chiral"
  const capacity = options.capacity ?? 16
  const hub: Hub = { accept: undefined, nextId: 0 }

  const serve = <E, R>(handler: (connection: Connection) => Effect.Effect<void, E, R>) =>
    Effect.gen(function*() {
      if (hub.accept !== undefined) {
        return yield* new TransportError({ reason: "Listen", address, detail: "already serving" })
      }
      const fibers = yield* FiberSet.make()
      const run = yield* FiberSet.runtime(fibers)<R>()
      const open = new Set<Effect.Effect<void>>()
      hub.accept = (connection, close) => {
        open.add(close)
        run(handler(connection).pipe(
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logWarning("chiral: connection ended", cause)
          ),
          Effect.ensuring(Effect.suspend(() => {
            open.delete(close)
            return close
          }))
        ))
      }
      // Runs before FiberSet's finalizer (registered earlier): stop accepting and
      // close every connection, then the handlers are interrupted.
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          hub.accept = undefined
          return Effect.forEach(open, (close) => close, { discard: true })
        })
      )
      return yield* Effect.never
    }).pipe(Effect.scoped)

  const connect = Effect.gen(function*() {
    const accept = hub.accept
    if (accept === undefined) {
      return yield* new TransportError({ reason: "Unavailable", address, detail: "no server is serving" })
    }
    const toServer: Pipe = yield* Queue.bounded<Uint8Array, Cause.Done>(capacity)
    const toClient: Pipe = yield* Queue.bounded<Uint8Array, Cause.Done>(capacity)
    const close = Effect.all([Queue.end(toServer), Queue.end(toClient)], { discard: true })
    const peer = `client ${++hub.nextId}`
    const id = `${address} ← ${peer}`
    yield* Effect.addFinalizer(() => close)
    accept(endpoint(id, toServer, toClient, id, peer), close)
    return endpoint(address, toClient, toServer, address)
  })

  return {
    server: ServerTransport.of({ address, serve }),
    client: ClientTransport.of({ address, connect })
  }
}

/** Both sides of one in-memory network, for a test's server and clients. */
export const layer = (options: MemoryOptions = {}): Layer.Layer<ServerTransport | ClientTransport> =>
  Layer.unwrap(Effect.sync(() => {
    const { client, server } = make(options)
    return Layer.merge(Layer.succeed(ServerTransport, server), Layer.succeed(ClientTransport, client))
  }))
