/**
 * The robot side. Holds every camera and proprio in its own Ref
 * (`SensorState`), and answers any number of clients through a
 * `ServerTransport`, each connection on fibers of its own
 * (`ServerConnection`). So a client that reads slowly only ever holds up its
 * own replies, and sensor writers, which only touch Refs, never wait for
 * anybody. Every action passes the `ActionGate` (validation, stale-action
 * guard, single controller, watchdog) before a handler sees it.
 */
import { type DecodeLimits, type Observation, warmYoungGeneration } from "@chiral/protocol"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Ref, type Scope } from "effect"
import * as ActionGate from "./ActionGate.js"
import type { ActionStats } from "./ActionStats.js"
import type { ConnectionInfo, Handlers } from "./Handlers.js"
import * as ServerConnection from "./ServerConnection.js"
import type { ConfigError } from "./SensorError.js"
import * as SensorState from "./SensorState.js"
import * as CloseReason from "./CloseReason.js"
import * as RefusalLog from "./RefusalLog.js"
import { closeWith, type Connection, ServerTransport } from "./Transport.js"

export type { MakeObsOptions } from "./SensorState.js"
export type { ActionGateConfig } from "./ActionGate.js"

/**
 * The robot-safety options (see `ActionGate`): `actionSpec`, `maxActionAge`,
 * `unstampedActions`, `singleController`, `actionTimeout` (with the
 * `onActionTimeout` handler).
 */
export interface PolicyServerConfig<E = never, R = never> extends SensorState.SensorConfig, ActionGate.ActionGateConfig {
  readonly handlers: Handlers<E, R>
  /**
   * Requests a connection may have waiting for an answer before the server
   * stops reading from it (backpressure on that client only). Default 8.
   */
  readonly maxPendingRequests?: number | undefined
  /** Limits applied when decoding client frames. */
  readonly decodeLimits?: Partial<DecodeLimits> | undefined
  /**
   * Of several `apply_action`s from one connection that arrive together (held
   * up on their way: the server had not read them in time, or something
   * between it and the client was stopped, blocked or busy), apply
   * only the newest and drop the older ones as `superseded`, counted and
   * logged (`NewestAction`). Default true. False applies every action as it
   * is read, as the reference servers do, bursts included.
   */
  readonly coalesceActions?: boolean | undefined
}

export interface PolicyServerApi extends SensorState.SensorState {
  /** Where clients reach this server. */
  readonly address: string
  /** Connections currently open. */
  readonly connections: Effect.Effect<number>
  /**
   * Actions accepted and refused (by reason) since the server started, and
   * the age of accepted actions' observations on arrival (ms p50/p99/max):
   * see `ActionStats`.
   */
  readonly actionStats: Effect.Effect<ActionStats>
  /** The connection in control, when `singleController` is on and a client has taken control. */
  readonly controller: Effect.Effect<ConnectionInfo | undefined>
}

export class PolicyServer extends Context.Service<PolicyServer, PolicyServerApi>()("@chiral/core/PolicyServer") {
  /** The server as a Layer: serves from when it is built until it is released. */
  static readonly layer = <E, R>(
    config: PolicyServerConfig<E, R>
  ): Layer.Layer<PolicyServer, ConfigError, ServerTransport | Exclude<R, PolicyServer>> =>
    Layer.effect(PolicyServer, make(config))
}

/**
 * How long `onConnect` may run before a line says the client waits for it:
 * until it returns, none of the client's frames is read, so its requests go
 * unanswered and its actions wait, with nothing on either side to say why.
 */
export const slowOnConnect: Duration.Duration = Duration.seconds(5)

/** `admission` (the user's `onConnect`), with a WARN once it has run `slowOnConnect`, and an INFO when it returns after that. */
const slowAdmissionSaid = <A, E, R>(id: string, admission: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const warning = yield* Effect.forkChild(Effect.andThen(
      Effect.sleep(slowOnConnect),
      Effect.logWarning(
        `chiral: onConnect has not returned for ${id} after ${Duration.format(slowOnConnect)}: none of its frames is read until it does (its requests wait, and its actions)`
      )
    ))
    const exit = yield* Effect.exit(admission)
    const said = warning.pollUnsafe() !== undefined
    yield* Fiber.interrupt(warning)
    if (said && !(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))) {
      const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
      yield* Effect.logInfo(`chiral: onConnect returned for ${id} after ${seconds.toFixed(1)} s`)
    }
    return yield* exit
  })

/**
 * Builds the server and serves through the `ServerTransport` in the scope:
 * closing the scope closes every connection and stops every fiber. Before
 * serving, it touches this thread's young generation unless a server, client
 * or recording proxy did before (`warmYoungGeneration`, from @chiral/protocol:
 * 0.1–0.6 s once, where it had grown to 64–128 MiB), so that serving does not
 * fault its pages in a few per request for the first seconds.
 */
export const make = <E, R>(
  config: PolicyServerConfig<E, R>
): Effect.Effect<PolicyServerApi, ConfigError, Scope.Scope | ServerTransport | Exclude<R, PolicyServer>> =>
  Effect.gen(function*() {
    const transport = yield* ServerTransport
    const { firstFrameAt, leaseObservationUnsafe, ...state } = yield* SensorState.make(config)
    const open = yield* Ref.make(0)
    // Handlers are given the api; it is assigned just below, before the
    // transport serves, so before any handler (or the watchdog's) can run.
    let api: PolicyServerApi | undefined
    const provide = <A, E1, R1>(effect: Effect.Effect<A, E1, R1>) => Effect.provideService(effect, PolicyServer, api!)
    const hooks = config.handlers
    const gate = yield* ActionGate.make(
      config,
      (event) => hooks.onActionTimeout === undefined ? Effect.void : provide(hooks.onActionTimeout(event)),
      state.cameras.map((camera) => camera.name),
      firstFrameAt
    )
    api = {
      ...state,
      address: transport.address,
      connections: Ref.get(open),
      actionStats: gate.stats,
      controller: gate.controller
    }
    const responder = ServerConnection.responder(config.handlers, api.makeObs(), api.makeObsLeased(), leaseObservationUnsafe)
    const options = {
      maxPending: config.maxPendingRequests ?? 8,
      limits: config.decodeLimits,
      coalesceActions: config.coalesceActions ?? true
    }

    const refusals = RefusalLog.make()
    const serveConnection = (connection: Connection) =>
      Effect.gen(function*() {
        const info: ConnectionInfo = {
          id: connection.id,
          peer: connection.peer,
          ...(connection.client === undefined ? {} : { client: connection.client })
        }
        yield* Ref.update(open, (n) => n + 1)
        yield* Effect.addFinalizer(() => Ref.update(open, (n) => n - 1))
        // A shared connection (a Zenoh router's session) stands for several clients:
        // its opening and closing say nothing about who connects, so they are debug lines.
        const log = connection.shared === true ? Effect.logDebug : Effect.logInfo
        if (hooks.onConnect !== undefined) {
          // suspended: a hook that throws instead of failing refuses the client as a failure does
          const onConnect = hooks.onConnect
          const refused = yield* Effect.exit(slowAdmissionSaid(connection.id, provide(Effect.suspend(() => onConnect(info)))))
          if (refused._tag === "Failure") {
            if (Cause.hasInterruptsOnly(refused.cause)) return yield* Effect.interrupt
            // The client is told it was refused, and why (1008), where the transport can say so.
            yield* refusals.refused(connection, refused.cause)
            return yield* closeWith(connection, CloseReason.policyViolation, CloseReason.refused(refused.cause))
          }
        }
        // Once let in: a connection refused has its one line (`RefusalLog`), not an opening too.
        yield* log(`chiral: connection opened: ${connection.id}${refusals.admitted(connection)}`)
        const actions = yield* gate.open(info)
        yield* Effect.addFinalizer(() => {
          const { accepted, disconnected, failed, refused, superseded } = actions.counts()
          const dropped = (superseded === 0 ? "" : `, ${superseded} superseded`) +
            (disconnected === 0 ? "" : `, ${disconnected} dropped as it closed`)
          const failures = failed === 0 ? "" : `, ${failed} failed in applyAction`
          const closed = log(
            `chiral: connection closed: ${connection.id} (${
              accepted - failed
            } actions applied, ${refused} refused${dropped}${failures})`
          )
          const onDisconnect = hooks.onDisconnect
          if (onDisconnect === undefined) return closed
          return Effect.andThen(
            closed,
            provide(Effect.suspend(() => onDisconnect(info))).pipe(
              Effect.catchCause((cause) => Effect.logWarning(`chiral: onDisconnect failed for ${connection.id}`, cause))
            )
          )
        })
        // Provided once for the connection's fibers, not around each request:
        // every effect step on the request path counts (see `ServerConnection`).
        yield* provide(ServerConnection.serve(connection, responder, { ...options, gate: actions }))
      }).pipe(Effect.scoped)

    // Before the first request: serving would otherwise fault the young
    // generation's pages in a few per request for its first seconds.
    warmYoungGeneration()
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
export const makeObs = (options?: SensorState.MakeObsOptions): Effect.Effect<Observation, never, PolicyServer> =>
  PolicyServer.use((server) => server.makeObs(options))

/** Serves until interrupted (what the references' `run()`/`serve()` do). */
export const run = <E, R>(
  config: PolicyServerConfig<E, R>
): Effect.Effect<never, ConfigError, ServerTransport | Exclude<R, PolicyServer>> =>
  Effect.scoped(Effect.flatMap(make(config), () => Effect.never))
