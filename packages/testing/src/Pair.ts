// A server and a client over a chosen transport, inside the test's scope.
import { Effect, Layer } from "effect"
import { ClientTransport, MemoryTransport, PolicyClient, PolicyServer, ServerTransport } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import * as Robot from "./Robot.js"

export type Transports = Layer.Layer<ServerTransport | ClientTransport, unknown>

/** Real loopback WebSocket on a free port; clients connect to the server's actual address. */
export const webSocket: Transports = Layer.unwrap(
  Effect.map(ServerTransport, (server) => Layer.succeed(ClientTransport, WebSocketTransport.makeClient(server.address)))
).pipe(Layer.provideMerge(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })))

export const memory = (options?: MemoryTransport.MemoryOptions): Transports => MemoryTransport.layer(options)

export const transports: ReadonlyArray<readonly [string, Transports]> = [["memory", memory()], ["websocket", webSocket]]

/**
 * Starts the test robot and connects one client; both stop with the scope.
 * The robot applies every action as read (`coalesceActions: false`, unless
 * asked otherwise), so a test of the client sees each action it sent, on a
 * busy machine too; the robot-side tests (`SafetyContract`, `startRobotWith`)
 * keep the server's default.
 */
export const startPair = (options: {
  readonly obsDelayMillis?: number | ((n: number) => number)
  readonly holdObs?: (n: number) => Effect.Effect<void>
  readonly client?: PolicyClient.PolicyClientOptions
  /** The server's `coalesceActions`; default false (see above). */
  readonly coalesceActions?: boolean
} = {}) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions: options.coalesceActions ?? false,
      handlers: Robot.handlers(recorder, options)
    })
    const client = yield* PolicyClient.make({ quiet: true, ...options.client })
    return { recorder, server, client }
  })

/** Only the test robot (for tests that start clients themselves). */
export const startServerOnly = () => Effect.flatMap(Robot.makeRecorder, (recorder) => startServerOnlyWith(recorder))

/**
 * The test robot recording into `recorder` (which may outlive it: a server
 * restarted, say); it applies every action as read, as `startPair`'s does.
 */
export const startServerOnlyWith = (
  recorder: Robot.Recorder,
  options: { readonly obsDelayMillis?: number | ((n: number) => number) } = {}
) =>
  Effect.gen(function*() {
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      coalesceActions: false,
      handlers: Robot.handlers(recorder, options)
    })
    return { recorder, server }
  })

/**
 * The test robot with server options of the test's choosing (the action
 * gate's, say), the server's defaults otherwise; its handlers record.
 */
export const startRobotWith = (
  config: Partial<Omit<PolicyServer.PolicyServerConfig<never, PolicyServer.PolicyServer>, "handlers">> = {}
) =>
  Effect.gen(function*() {
    const recorder = yield* Robot.makeRecorder
    const server = yield* PolicyServer.make({
      cameras: Robot.cameras,
      proprios: Robot.proprios,
      ...config,
      handlers: Robot.handlers(recorder)
    })
    return { recorder, server }
  })
