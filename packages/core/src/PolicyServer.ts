/**
 * The robot side. Holds every camera and proprio in its own Ref, and answers
 * any number of clients through a `ServerTransport`.
 *
 * Per connection there are two fibers: the reader decodes each frame and
 * either applies an action at once or queues a request; the responder answers
 * queued requests in order and awaits each send. So a client that reads slowly
 * only ever holds up its own responder, actions keep arriving while a large
 * observation is on its way out, and sensor writers, which only touch Refs,
 * never wait for anybody.
 */
import {
  decodeFrame,
  type DecodeLimits,
  encodeFrameParts,
  type Message,
  type Observation,
  type UserMap
} from "@chiral/protocol"
import { Cause, Context, Data, Effect, Layer, Queue, Ref, Result, Scope, Stream } from "effect"
import * as CameraConfig from "./CameraConfig.js"
import * as CameraState from "./CameraState.js"
import type { ActionContext, Handlers, StepResult } from "./Handlers.js"
import type { MatrixInput } from "./Matrix.js"
import * as ProprioConfig from "./ProprioConfig.js"
import * as ProprioState from "./ProprioState.js"
import type { SensorInput, WriteOptions } from "./SensorData.js"
import { ConfigError, SensorError } from "./SensorError.js"
import { type Connection, ServerTransport } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

export interface MakeObsOptions {
  /** The observation's own timestamp. Default: now, on the capture clock (`CameraState.captureTime`). */
  readonly timestamp?: number | undefined
  /** User extras sent along (`extra`). Default `{}`. */
  readonly extra?: UserMap | undefined
}

export interface PolicyServerConfig<E = never, R = never> {
  readonly cameras?: ReadonlyArray<CameraConfig.CameraConfigInput> | undefined
  readonly proprios?: ReadonlyArray<ProprioConfig.ProprioConfigInput> | undefined
  readonly handlers: Handlers<E, R>
  /**
   * Requests a connection may have waiting for an answer before the server
   * stops reading from it (backpressure on that client only). Default 8.
   */
  readonly maxPendingRequests?: number | undefined
  /** Limits applied when decoding client frames. */
  readonly decodeLimits?: Partial<DecodeLimits> | undefined
}

export interface PolicyServerApi {
  /** Where clients reach this server. */
  readonly address: string
  readonly cameras: ReadonlyArray<CameraConfig.CameraConfig>
  readonly proprios: ReadonlyArray<ProprioConfig.ProprioConfig>
  /** Replaces a camera's image and stamps its capture time (monotonic clock, see `CameraState.captureTime`). */
  readonly updateImage: (camera: string, image: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly updateDepth: (camera: string, depth: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  /** 3×3 K, flat row-major or rows. */
  readonly updateIntrinsics: (camera: string, k: MatrixInput) => Effect.Effect<void, SensorError>
  /** 4×4 camera-to-world T, flat row-major or rows. Wrist cameras: call it every frame. */
  readonly updateExtrinsics: (camera: string, t: MatrixInput) => Effect.Effect<void, SensorError>
  readonly updateProprio: (name: string, values: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  /**
   * Snapshots every camera (each one consistent with respect to its writer,
   * cameras one after another) and every proprio. Copies nothing; the frames
   * share the state's buffers and are read-only.
   */
  readonly makeObs: (options?: MakeObsOptions) => Effect.Effect<Observation>
  /** Connections currently open. */
  readonly connections: Effect.Effect<number>
}

export class PolicyServer extends Context.Service<PolicyServer, PolicyServerApi>()("@chiral/core/PolicyServer") {
  /** The server as a Layer: serves from when it is built until it is released. */
  static readonly layer = <E, R>(
    config: PolicyServerConfig<E, R>
  ): Layer.Layer<PolicyServer, ConfigError, ServerTransport | Exclude<R, PolicyServer>> =>
    Layer.effect(PolicyServer, make(config))
}

type Request =
  | { readonly type: "metadata" }
  | { readonly type: "reset" }
  | { readonly type: "obs_request" }
  | Extract<Message, { readonly type: "action" }>

/** Logs a handler's failure (it ends neither the connection nor the server); interruption passes through. */
const logFailure = (message: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  Effect.catchCause(effect, (cause) =>
    Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.logWarning(message, cause))

class Unanswered extends Data.TaggedError("Unanswered")<{ readonly request: string }> {}

const unique = (names: ReadonlyArray<string>, kind: string): ConfigError | undefined => {
  const seen = new Set<string>()
  for (const name of names) {
    if (seen.has(name)) return new ConfigError({ sensor: name, reason: `two ${kind}s are named ${JSON.stringify(name)}` })
    seen.add(name)
  }
  return undefined
}

const configs = <I, C>(inputs: ReadonlyArray<I>, make: (input: I) => C | ConfigError) =>
  Effect.forEach(inputs, (input) => {
    const config = make(input)
    return config instanceof ConfigError ? Effect.fail(config) : Effect.succeed(config)
  })

/** The sensor state and its update/snapshot operations, without serving. */
const makeState = Effect.fnUntraced(function*(config: Pick<PolicyServerConfig, "cameras" | "proprios">) {
  const cameras = yield* configs(config.cameras ?? [], CameraConfig.make)
  const proprios = yield* configs(config.proprios ?? [], ProprioConfig.make)
  const duplicate = unique(cameras.map((c) => c.name), "camera") ?? unique(proprios.map((p) => p.name), "proprio")
  if (duplicate) return yield* duplicate
  const cameraStates = yield* Effect.forEach(cameras, CameraState.make)
  const proprioStates = yield* Effect.forEach(proprios, ProprioState.make)
  const cameraByName = new Map(cameraStates.map((s) => [s.config.name, s]))
  const proprioByName = new Map(proprioStates.map((s) => [s.config.name, s]))

  const withCamera = <A>(
    name: string,
    field: SensorError["field"],
    f: (state: CameraState.CameraState) => Effect.Effect<A, SensorError>
  ): Effect.Effect<A, SensorError> => {
    const state = cameraByName.get(name)
    return state === undefined
      ? Effect.fail(new SensorError({ sensor: name, field, reason: `no camera named ${JSON.stringify(name)}` }))
      : f(state)
  }

  const makeObs = (options?: MakeObsOptions): Effect.Effect<Observation> =>
    Effect.gen(function*() {
      const timestamp = options?.timestamp ?? (yield* CameraState.captureTime)
      const frames = new Array(cameraStates.length)
      for (let i = 0; i < cameraStates.length; i++) frames[i] = yield* cameraStates[i]!.snapshot
      const values = new Array(proprioStates.length)
      for (let i = 0; i < proprioStates.length; i++) values[i] = yield* proprioStates[i]!.snapshot
      return { timestamp, cameras: frames, proprios: values, extra: options?.extra ?? {} }
    })

  return {
    cameras,
    proprios,
    updateImage: (camera: string, image: SensorInput, options?: WriteOptions) =>
      withCamera(camera, "image", (s) => s.updateImage(image, options)),
    updateDepth: (camera: string, depth: SensorInput, options?: WriteOptions) =>
      withCamera(camera, "depth", (s) => s.updateDepth(depth, options)),
    updateIntrinsics: (camera: string, k: MatrixInput) => withCamera(camera, "intrinsics", (s) => s.updateIntrinsics(k)),
    updateExtrinsics: (camera: string, t: MatrixInput) => withCamera(camera, "extrinsics", (s) => s.updateExtrinsics(t)),
    updateProprio: (name: string, values: SensorInput, options?: WriteOptions) => {
      const state = proprioByName.get(name)
      return state === undefined
        ? Effect.fail(new SensorError({ sensor: name, field: "proprio", reason: `no proprio named ${JSON.stringify(name)}` }))
        : state.update(values, options)
    },
    makeObs
  }
})

/**
 * Builds the server and serves through the `ServerTransport` in the scope:
 * closing the scope closes every connection and stops every fiber.
 */
export const make = <E, R>(
  config: PolicyServerConfig<E, R>
): Effect.Effect<PolicyServerApi, ConfigError, Scope.Scope | ServerTransport | Exclude<R, PolicyServer>> =>
  Effect.gen(function*() {
    const transport = yield* ServerTransport
    const state = yield* makeState(config)
    const open = yield* Ref.make(0)
    const api: PolicyServerApi = {
      ...state,
      address: transport.address,
      connections: Ref.get(open)
    }
    const handlers = config.handlers
    const provide = <A, E1, R1>(effect: Effect.Effect<A, E1, R1>) => Effect.provideService(effect, PolicyServer, api)
    const maxPending = config.maxPendingRequests ?? 8
    const limits = config.decodeLimits

    const applyAction: Handlers<E, R>["applyAction"] = handlers.applyAction
    const step = handlers.step ?? ((action, context: ActionContext) =>
      Effect.flatMap(applyAction(action, context), () =>
        Effect.map(api.makeObs(), (obs): StepResult => ({ obs }))))

    /** The reply to one request, as a message to encode. */
    const answer = (request: Request, connection: string): Effect.Effect<Message, E, R> => {
      switch (request.type) {
        case "metadata":
          return handlers.getMetadata === undefined
            ? Effect.succeed({ type: "metadata_response", data: {} })
            : Effect.map(handlers.getMetadata, (data) => ({ type: "metadata_response", data }))
        case "reset":
          return Effect.map(handlers.reset, ({ info, obs }) => ({ type: "reset_response", obs, info: info ?? {} }))
        case "obs_request":
          return Effect.map(handlers.getObs ?? api.makeObs(), (obs) => ({ type: "obs_response", obs }))
        case "action":
          return Effect.map(
            step(request.action, { obsTimestamps: request.obsTimestamps, connection }),
            (result) => ({
              type: "step_response",
              obs: result.obs,
              reward: result.reward ?? 0,
              terminated: result.terminated ?? false,
              truncated: result.truncated ?? false,
              info: result.info ?? {}
            })
          )
      }
    }

    // A request the handler cannot answer would leave the client waiting, and
    // the protocol has no error reply: log it and close that connection, which
    // the client sees at once as a typed error (the Python server does the same
    // by letting the handler's exception end the connection). A shared
    // connection (Zenoh) stays open; its client runs into its timeout.
    const respond = (connection: Connection) => (request: Request) =>
      answer(request, connection.id).pipe(
        provide,
        Effect.flatMap((reply) => Effect.try({ try: () => encodeFrameParts(reply), catch: (cause) => cause })),
        Effect.matchCauseEffect({
          onFailure: (cause) => {
            if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
            const what = `chiral: cannot answer ${request.type} from ${connection.id}`
            return connection.shared === true
              ? Effect.logWarning(what, cause)
              : Effect.andThen(
                Effect.logWarning(`${what}; closing it`, cause),
                Effect.fail(new Unanswered({ request: request.type }))
              )
          },
          onSuccess: connection.send
        })
      )

    const dropped = (connection: Connection, reason: string) =>
      Effect.logWarning(`chiral: dropped frame from ${connection.id}: ${reason}`)

    const serveConnection = (
      connection: Connection
    ): Effect.Effect<void, TransportError, Exclude<R, PolicyServer>> =>
      Effect.gen(function*() {
        yield* Ref.update(open, (n) => n + 1)
        yield* Effect.addFinalizer(() => Ref.update(open, (n) => n - 1))
        const requests = yield* Queue.bounded<Request>(maxPending)
        const responder = Effect.forever(Effect.flatMap(Queue.take(requests), respond(connection)))
        const reader = connection.frames.pipe(
          Stream.runForEach((frame) => {
            const decoded = decodeFrame(frame, limits)
            if (Result.isFailure(decoded)) return dropped(connection, decoded.failure.message)
            const message = decoded.success
            switch (message.type) {
              case "metadata":
              case "reset":
              case "obs_request":
              case "action":
                return Queue.offer(requests, message)
              case "apply_action":
                return applyAction(message.action, {
                  obsTimestamps: message.obsTimestamps,
                  connection: connection.id
                }).pipe(
                  provide,
                  logFailure(`chiral: applyAction failed for ${connection.id}`)
                )
              default:
                return dropped(connection, `a client does not send ${message.type}`)
            }
          })
        )
        // Either ends the connection: the client leaving, or a request that cannot be answered.
        yield* Effect.raceFirst(reader, responder).pipe(Effect.catchTag("Unanswered", () => Effect.void))
      }).pipe(Effect.scoped)

    // Started immediately so the transport is serving by the time `make` returns.
    yield* transport.serve(serveConnection).pipe(
      Effect.tapCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("chiral: server stopped", cause)
      ),
      Effect.forkScoped({ startImmediately: true })
    )
    return api
  })

/** `makeObs` of the `PolicyServer` in context: the usual body of `reset` and `getObs` handlers. */
export const makeObs = (options?: MakeObsOptions): Effect.Effect<Observation, never, PolicyServer> =>
  PolicyServer.use((server) => server.makeObs(options))

/** Serves until interrupted (what the references' `run()`/`serve()` do). */
export const run = <E, R>(
  config: PolicyServerConfig<E, R>
): Effect.Effect<never, ConfigError, ServerTransport | Exclude<R, PolicyServer>> =>
  Effect.scoped(Effect.flatMap(make(config), () => Effect.never))
