/**
 * In-process recording: wraps a `ServerTransport` or `ClientTransport` so that
 * everything a `PolicyServer` or `PolicyClient` sends and receives is also
 * handed to a `Recorder`, whatever the transport underneath. Received frames
 * are recorded as they arrive, sent ones once the send has completed (with
 * the time the send began), so the recorder never delays a frame.
 *
 * A recorded client dispatches its actions from its own fiber, through the
 * recorded `send`: a transport's off-thread action dispatcher (the WebSocket
 * client's worker) writes to the socket directly, where no recorder could see
 * the actions, so a wrapped connection does not offer it.
 */
import { ClientTransport, type Connection, type OutgoingFrame, ServerTransport } from "@chiral/core"
import { Effect, Layer, Stream } from "effect"
import * as Recorder from "./Recorder.js"

/** `connection` with its traffic handed to `recorder`; `inbound` is the direction of what it receives. */
export const tapConnection = (connection: Connection, recorder: Recorder.Recorder, inbound: Recorder.Direction): Connection => {
  const outbound: Recorder.Direction = inbound === "c2s" ? "s2c" : "c2s"
  const id = connection.id
  // Not `dispatch`: a client's off-thread dispatcher would write actions past the recorder.
  return {
    id,
    peer: connection.peer,
    shared: connection.shared,
    close: connection.close,
    frames: Stream.tap(connection.frames, (frame) => Effect.sync(() => recorder.record(inbound, id, frame))),
    send: (frame: OutgoingFrame) =>
      Effect.suspend(() => {
        const at = Recorder.now()
        return Effect.tap(connection.send(frame), () => Effect.sync(() => recorder.record(outbound, id, frame, at)))
      })
  }
}

/** A `ServerTransport` whose connections are recorded. */
export const recordServer = (transport: ServerTransport["Service"], recorder: Recorder.Recorder): ServerTransport["Service"] =>
  ServerTransport.of({
    address: transport.address,
    serve: (handler) => transport.serve((connection) => handler(tapConnection(connection, recorder, "c2s")))
  })

/** A `ClientTransport` whose connections are recorded. */
export const recordClient = (transport: ClientTransport["Service"], recorder: Recorder.Recorder): ClientTransport["Service"] =>
  ClientTransport.of({
    address: transport.address,
    waitingMessage: transport.waitingMessage,
    connect: Effect.map(transport.connect, (connection) => tapConnection(connection, recorder, "s2c"))
  })

/**
 * Records the `ServerTransport` below it to `options.path`: put it between a
 * `PolicyServer` and its transport. The file is completed when the layer is released.
 */
export const layerServer = (options: Recorder.RecorderOptions): Layer.Layer<ServerTransport, Recorder.RecordError, ServerTransport> =>
  Layer.effect(
    ServerTransport,
    Effect.gen(function*() {
      const transport = yield* ServerTransport
      return recordServer(transport, yield* Recorder.make(options))
    })
  )

/** Records the `ClientTransport` below it to `options.path` (see `layerServer`). */
export const layerClient = (options: Recorder.RecorderOptions): Layer.Layer<ClientTransport, Recorder.RecordError, ClientTransport> =>
  Layer.effect(
    ClientTransport,
    Effect.gen(function*() {
      const transport = yield* ClientTransport
      return recordClient(transport, yield* Recorder.make(options))
    })
  )
