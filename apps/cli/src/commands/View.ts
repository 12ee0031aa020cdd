import { ClientConnection, PolicyClient, type TransportError } from "@chiral/core"
import { LiveView, Recorder } from "@chiral/record"
import * as AccessToken from "@chiral/websocket/AccessToken"
import { Console, Effect, FiberHandle, Logger, Option, References, Schedule, Stream, SubscriptionRef } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "../Flags.js"
import { clientTransportFor, shown, uriTokenOf, withToken } from "../Transports.js"
import { failWith } from "./Decode.js"

export const defaultViewPort = 8767

/**
 * How the view reconnects to its robot: the client's default backoff, for as
 * long as it takes (a robot restarting, or down for a while), except past a
 * robot that turns the token away (HTTP 401: it came back with another), which
 * no retry mends; `refusal` is then that answer, for the view's last line.
 */
const viewReconnection = () => {
  let refusal: TransportError | undefined
  const schedule = Schedule.while(ClientConnection.defaultReconnect, ({ input }) => {
    if (!AccessToken.isUnauthorized(input.detail)) return true
    refusal = input
    return false
  })
  return { schedule, refusal: () => refusal }
}

export const view = Command.make(
  "view",
  {
    uri: Argument.String("uri").pipe(Argument.withDescription("The robot: ws://host:port (WebSocket) or tcp/host:port (Zenoh)")),
    hz: Flag.Finite("hz").pipe(
      Flag.withDescription("Observations per second to request from the robot and show, while a viewer is connected (default 10)"),
      Flag.withDefault(10)
    ),
    port: Flag.Int("port").pipe(
      Flag.withAlias("p"),
      Flag.withDescription(`Port of the Foxglove WebSocket server; 0 picks a free one (default ${defaultViewPort})`),
      Flag.withDefault(defaultViewPort)
    ),
    host: Flags.host("Interface the view listens on", "127.0.0.1"),
    token: Flags.token("the robot URI's token (viewers present the view what they would present the robot)", {
      who: "Viewers",
      note: "; also presented to the robot when its ws:// URI has none"
    }),
    protocol: Flags.uriProtocol("Transport to the robot"),
    keyPrefix: Flags.keyPrefix("the robot's")
  },
  Effect.fnUntraced(function*(flags) {
    if (!(flags.hz > 0 && flags.hz <= 1000)) return yield* failWith("view", `--hz ${flags.hz}: expected a rate from above 0 to 1000`)
    if (!(Number.isInteger(flags.port) && flags.port >= 0 && flags.port <= 65535)) {
      return yield* failWith("view", `--port ${flags.port}: expected a port from 0 to 65535`)
    }
    // The view shows what the robot's cameras see: a robot that requires a
    // token must not be watched without one, so by default viewers present
    // the robot's own token; a token given for the view is the robot's too
    // when its URI has none (one CHIRAL_TOKEN for both).
    const resolved = yield* Flags.tokenOf(flags.token, "websocket", uriTokenOf(flags.uri))
    if ("error" in resolved) return yield* failWith("view", resolved.error)
    const token = resolved.token
    const robot = withToken(flags.uri, token)
    const transport = clientTransportFor(robot, {
      protocol: Option.getOrUndefined(flags.protocol),
      keyPrefix: Option.getOrUndefined(flags.keyPrefix),
      dispatchThread: "main"
    })
    if (typeof transport === "string") return yield* failWith("view", transport)
    yield* Effect.gen(function*() {
      const live = yield* LiveView.make({ host: flags.host, port: flags.port, hz: flags.hz, withActions: false, token })
      yield* Console.error(
        `chiral view: Foxglove live view on ${live.address} (${
          token === undefined ? "" : `token required: ${live.address}/?token=***, `
        }Foxglove → Open connection → Foxglove WebSocket)`
      )
      const reconnection = viewReconnection()
      // An extra client of the robot: it asks for observations at --hz, as a
      // policy would. Its info lines on a reconnection (each kind of failed
      // attempt, the obs stream paused, reconnected) are what the view's
      // lost and back lines say; its warnings (why the robot was lost, a
      // refusal) are kept.
      const quieter = Effect.provideService(References.MinimumLogLevel, "Warn")
      const client = yield* quieter(PolicyClient.make({ reconnect: reconnection.schedule }))
      const robotShown = shown(robot)
      yield* Console.error(`chiral view: showing ${robotShown} at ${flags.hz} Hz while a viewer is connected`)
      // The client's observations outlive its connections: after a robot
      // restart the new robot's arrive on the same stream.
      yield* client.observations.pipe(
        Stream.runForEach((obs) => Effect.sync(() => live.publishReply({ reply: "obs_response", obs }, robotShown, Recorder.now()))),
        Effect.forkScoped
      )
      // Each request costs the robot a capture and an encoding that a policy
      // on the same robot competes for: asked only while someone watches.
      let watching = false
      yield* SubscriptionRef.changes(live.viewers).pipe(
        Stream.runForEach((viewers) => {
          if (viewers > 0 === watching) return Effect.void
          watching = viewers > 0
          return watching
            ? Effect.andThen(
              Console.error(`chiral view: a viewer is connected: asking ${robotShown} for observations`),
              quieter(client.startObsStream(flags.hz))
            )
            : Effect.andThen(
              client.stopObsStream,
              Console.error(`chiral view: no viewer connected: not asking ${robotShown} for observations`)
            )
        }),
        Effect.forkScoped
      )
      // The client reconnects by itself; the view says so, and runs on until
      // Ctrl-C or until the client gives up. The robot is back once it
      // answers on the new connection (its metadata), not when the
      // connection opens: a server may let the client in and then turn it
      // away (a recording proxy whose robot is down: 1013), which would
      // otherwise read as back and lost again at every attempt.
      let lost = false
      const confirm = client.getMetadata.pipe(
        Effect.andThen(Effect.suspend(() => {
          lost = false
          return Console.error(`chiral view: ${robotShown} is back`)
        })),
        Effect.ignore
      )
      const confirming = yield* FiberHandle.make()
      yield* SubscriptionRef.changes(client.connectionState).pipe(
        Stream.changes,
        Stream.takeUntil((state) => state === "closed"),
        Stream.runForEach((state) => {
          if (state === "connected") return lost ? FiberHandle.run(confirming, confirm) : Effect.void
          return Effect.andThen(
            FiberHandle.clear(confirming),
            Effect.suspend(() => {
              if (lost) return Effect.void
              lost = true
              return Console.error(`chiral view: lost ${robotShown}; waiting for it to come back (Ctrl-C to quit)`)
            })
          )
        })
      )
      const refusal = reconnection.refusal()
      return yield* failWith(
        "view",
        `gave up on ${robotShown}: ${refusal === undefined ? "the client closed its connection" : refusal.detail ?? refusal.message}`
      )
    }).pipe(
      Effect.scoped,
      Effect.provide(transport),
      Effect.catchTags({
        TransportError: (error) => failWith("view", `cannot connect: ${error.message}`),
        ViewError: (error) => failWith("view", `cannot serve the view: ${error.message}`)
      })
    )
  }, Effect.provideService(Logger.LogToStderr, true))
).pipe(
  Command.withDescription(
    "Watch a live robot in Foxglove or Lichtblick: connects to the robot as one more client, asks for observations at --hz while at least one viewer is connected (none otherwise: each costs the robot a capture that its policy competes for) and serves them over the Foxglove WebSocket protocol (images, depth, camera calibration and /tf from K and T, proprios). The view shows what the robot's cameras see: it listens on this machine only unless --host says otherwise (then without a token it warns that anyone who reaches the port can watch), and with a token (--token, CHIRAL_TOKEN, else the robot URI's) viewers must present it: Foxglove → Open connection → ws://host:port/?token=T. A token is never printed (***). A viewer that reads slowly gets frames dropped; the robot and its policy never wait for it. When the robot is lost (restarted, down) the view says so, reconnects by itself and says when it is back. Runs until Ctrl-C, or ends non-zero, saying why, if the robot comes back refusing the token."
  ),
  Command.withExamples([
    { command: "chiral view ws://robot:8765", description: "Then in Foxglove, on this machine: Open connection → ws://127.0.0.1:8767" },
    {
      command: "CHIRAL_TOKEN=s3cret chiral view ws://robot:8765 --host 0.0.0.0",
      description: "For other machines: Foxglove → ws://this-machine:8767/?token=s3cret (the robot is asked with the same token)"
    },
    {
      command: "chiral view \"ws://robot:8765/?token=r0b0t\" --host 0.0.0.0",
      description: "A robot that requires a token: viewers present the same one"
    },
    { command: "chiral view tcp/robot:7447 --hz 5 --port 9090", description: "A Zenoh robot, 5 observations a second" }
  ])
)
