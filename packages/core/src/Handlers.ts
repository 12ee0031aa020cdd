/**
 * What the robot does with requests. Handlers are effects; they may use the
 * `PolicyServer` service (e.g. `makeObs`), which the server provides to them.
 */
import type { Observation, ObsTimestamps, Tensor, UserMap } from "@chiral/protocol"
import type { Effect } from "effect"
import type { ActionTimeout, ConnectionInfo } from "./Watchdog.js"

export type { ActionTimeout, ConnectionInfo } from "./Watchdog.js"

/** What an action arrived with. */
export interface ActionContext {
  /** The capture times of the observation the policy acted on (camera → seconds); `{}` when none. */
  readonly obsTimestamps: ObsTimestamps
  /** The connection it came from (for logs). */
  readonly connection: string
}

export interface ResetResult {
  readonly obs: Observation
  readonly info?: UserMap | undefined
}

export interface StepResult {
  readonly obs: Observation
  readonly reward?: number | undefined
  readonly terminated?: boolean | undefined
  readonly truncated?: boolean | undefined
  readonly info?: UserMap | undefined
}

/**
 * A request handler (`getMetadata`, `reset`, `getObs`, `step`) that fails
 * leaves its request without an answer, and the protocol has no error reply:
 * the failure is logged and that client's connection closed, over WebSocket
 * with 1011 and "chiral: <request> failed: <the error's message>", which the
 * client's error shows (so that message reaches the policy's side: keep
 * secrets out of it).
 */
export interface Handlers<E = never, R = never> {
  /** Static environment description (action shape, camera names…). Default `{}`. */
  readonly getMetadata?: Effect.Effect<UserMap, E, R> | undefined
  /** Resets the robot/environment. */
  readonly reset: Effect.Effect<ResetResult, E, R>
  /** Answers `obs_request`. Default: `makeObs()`. */
  readonly getObs?: Effect.Effect<Observation, E, R> | undefined
  /**
   * Applies one action (fire-and-forget: nothing is sent back). Actions from a
   * connection are applied one after another, in arrival order; of those that
   * arrive together, or while one is being applied, only the newest
   * (`coalesceActions`, default on; the older are dropped as superseded).
   * Keep it quick (hand off to a controller): a slow one makes the actions
   * that arrive meanwhile superseded, and a request from that client waits
   * for it. A failure, a throw or an interruption counts as `failed`.
   */
  readonly applyAction: (action: Tensor, context: ActionContext) => Effect.Effect<void, E, R>
  /**
   * Answers the legacy `action` message (C++ clients): an N×D chunk, answered
   * with `step_response`. Default: `applyAction`, then `makeObs()`, reward 0,
   * not terminated, not truncated, info `{}`.
   */
  readonly step?: ((action: Tensor, context: ActionContext) => Effect.Effect<StepResult, E, R>) | undefined
  /**
   * A client connected (before any of its requests is read). Failing refuses
   * the connection: it is logged and closed, over WebSocket with 1008 (policy
   * violation) and "chiral: refused by the robot's onConnect: " and the
   * error's message, which the client's error shows; `onDisconnect` does
   * not run. None of the client's frames is read until it returns; one still
   * running after 5 s (`PolicyServer.slowOnConnect`) is logged at WARN, and
   * its return after that at INFO.
   * A shared connection (Zenoh) connects once, for every client.
   */
  readonly onConnect?: ((connection: ConnectionInfo) => Effect.Effect<void, E, R>) | undefined
  /**
   * A client's connection ended, however it ended (closed, lost, timed out by
   * the keepalive, or the server shutting down). The usual body: stop the arm
   * if that client was driving it. Failures are logged.
   */
  readonly onDisconnect?: ((connection: ConnectionInfo) => Effect.Effect<void, E, R>) | undefined
  /**
   * The action watchdog fired: actions had been arriving and none was
   * accepted for `PolicyServerConfig.actionTimeout`. Runs once per gap; the
   * next accepted action re-arms it. The usual body: hold position. Failures
   * are logged.
   */
  readonly onActionTimeout?: ((event: ActionTimeout) => Effect.Effect<void, E, R>) | undefined
}
