// chiral view against robots that restart, and with viewers that come and go.
import { PolicyClient, PolicyServer } from "@chiral/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { view } from "../src/commands/View.js"
import { clientTransportFor, serverTransports } from "../src/Transports.js"
import * as FoxgloveViewer from "./support/FoxgloveViewer.js"
import { startCommand } from "./support/RunCommand.js"

// Live sockets on a loaded 2-core machine: generous.
const liveTimeout = 60_000

/**
 * A one-camera robot on `port` (0: a free one) whose observations say which
 * robot answered (`extra.robot`), counting the obs_requests it answers.
 */
const robotOn = (port: number, name: string, token?: string) =>
  Effect.gen(function*() {
    const counted = { obsRequests: 0 }
    const transport = yield* Layer.build(
      serverTransports.websocket({ host: "127.0.0.1", port, ...(token === undefined ? {} : { webSocket: { token } }) })
    )
    const server = yield* PolicyServer.make({
      cameras: [{ name: "cam_0", width: 4, height: 2 }],
      handlers: {
        reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })),
        getObs: Effect.andThen(Effect.sync(() => counted.obsRequests++), PolicyServer.makeObs({ extra: { robot: name } })),
        applyAction: () => Effect.void
      }
    }).pipe(Effect.provideContext(transport))
    return { address: server.address, counted }
  })

/** The robot each `/observation` a viewer received came from. */
const robotsSeen = (viewer: FoxgloveViewer.Viewer) =>
  viewer.messages.filter((m) => m.topic === "/observation").map((m) =>
    (JSON.parse(new TextDecoder().decode(m.data)) as { extra: { robot?: string } }).extra.robot
  )

/** Fails the test with what the view printed if the view ends first. */
const whileViewRuns = (viewing: { readonly fiber: Fiber.Fiber<unknown, unknown>; readonly output: { readonly stderr: Array<string> } }) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.raceFirst(Effect.flatMap(Fiber.await(viewing.fiber), (exit) =>
    Effect.die(new Error(`the view ended: ${String(exit)}; stderr: ${viewing.output.stderr.join(" | ")}`)))))

/** Completes once the view has printed a line containing `text`. */
const printed = (viewing: { readonly output: { readonly stderr: Array<string> } }, text: string) =>
  until(() => viewing.output.stderr.some((l) => l.includes(text)))

const until = (condition: () => boolean) =>
  Effect.sync(condition).pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) }), Effect.asVoid)

/** A viewer subscribed to `/observation`, closed with `scope`. */
const watcher = (address: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const viewer = yield* FoxgloveViewer.connect(address).pipe(Scope.provide(scope))
    yield* viewer.until(() => viewer.channels.has("/observation"))
    viewer.subscribe("/observation")
    return viewer
  })

describe("chiral view", () => {
  it.live("survives a robot restart: says it lost the robot and that it is back, then shows the new robot's observations", () =>
    Effect.gen(function*() {
      const firstScope = yield* Scope.make()
      const first = yield* robotOn(0, "first").pipe(Scope.provide(firstScope))
      const port = Number(new URL(first.address).port)
      const viewing = yield* startCommand(view, [first.address, "--host", "127.0.0.1", "--port", "0", "--hz", "20"], "live view on ")
      const running = whileViewRuns(viewing)
      const viewer = yield* running(watcher(viewing.address, yield* Effect.scope))
      yield* running(viewer.until(() => robotsSeen(viewer).includes("first")))

      // The robot stops; another starts on the same port.
      yield* Scope.close(firstScope, Exit.void)
      const second = yield* robotOn(port, "second")
      assert.strictEqual(second.address, first.address)
      yield* running(viewer.until(() => robotsSeen(viewer).includes("second")))

      const lines = viewing.output.stderr.filter((l) => l.startsWith("chiral view: "))
      const lost = lines.indexOf(`chiral view: lost ${first.address}; waiting for it to come back (Ctrl-C to quit)`)
      assert.isAtLeast(lost, 0, lines.join(" | "))
      yield* running(printed(viewing, `chiral view: ${first.address} is back`))
      // Still running: it ends only on Ctrl-C (or when its client gives up).
      assert.isUndefined(viewing.fiber.pollUnsafe())
    }).pipe(Effect.scoped), liveTimeout)

  it.live("asks the robot for observations only while a viewer is connected: none before, from when one connects, none after it leaves", () =>
    Effect.gen(function*() {
      const robot = yield* robotOn(0, "robot")
      const viewing = yield* startCommand(view, [robot.address, "--host", "127.0.0.1", "--port", "0", "--hz", "20"], "live view on ")
      const running = whileViewRuns(viewing)
      yield* running(printed(viewing, `chiral view: showing ${robot.address}`))
      // A policy on the same robot, asking at the view's rate: what the view
      // would have asked meanwhile is counted against its requests, not time.
      const transport = clientTransportFor(robot.address)
      if (typeof transport === "string") return assert.fail(transport)
      const policy = yield* PolicyClient.make({}).pipe(Effect.provide(transport))
      let mine = 0
      const policyObserves = (n: number) =>
        running(Effect.andThen(policy.getObs, Effect.sync(() => mine++)).pipe(
          Effect.repeat({ times: n - 1, schedule: Schedule.spaced(50) })
        ))
      const fromView = () => robot.counted.obsRequests - mine

      yield* policyObserves(20)
      assert.strictEqual(fromView(), 0, "obs_requests from the view while no viewer is connected")

      const viewerScope = yield* Scope.make()
      const viewer = yield* running(watcher(viewing.address, viewerScope))
      yield* running(until(() => fromView() > 0 && robotsSeen(viewer).length > 0))
      yield* printed(viewing, `chiral view: a viewer is connected: asking ${robot.address} for observations`)

      yield* Scope.close(viewerScope, Exit.void)
      yield* running(printed(viewing, `chiral view: no viewer connected: not asking ${robot.address} for observations`))
      // (a request in flight as the viewer left is answered meanwhile)
      yield* policyObserves(5)
      const asked = fromView()
      yield* policyObserves(20)
      assert.strictEqual(fromView(), asked, "obs_requests from the view after the last viewer left")
    }).pipe(Effect.scoped), liveTimeout)

  it.live("gives up, non-zero with a one-line reason, when the robot comes back refusing its token", () =>
    Effect.gen(function*() {
      const firstScope = yield* Scope.make()
      const first = yield* robotOn(0, "first", "s3cret").pipe(Scope.provide(firstScope))
      const port = Number(new URL(first.address).port)
      const viewing = yield* startCommand(view, [`${first.address}/?token=s3cret`, "--port", "0"], "live view on ")
      yield* whileViewRuns(viewing)(printed(viewing, "chiral view: showing "))
      yield* Scope.close(firstScope, Exit.void)
      yield* robotOn(port, "second", "an0ther")
      const exit = yield* Fiber.await(viewing.fiber)
      assert.isTrue(Exit.isFailure(exit), String(exit))
      const lines = viewing.output.stderr.filter((l) => l.startsWith("chiral view: "))
      assert.strictEqual(lines.at(-2), `chiral view: lost ${first.address}/?token=***; waiting for it to come back (Ctrl-C to quit)`)
      assert.include(
        lines.at(-1),
        `chiral view: gave up on ${first.address}/?token=***: the server refused the access token given (HTTP 401): check it against the robot's --token / CHIRAL_TOKEN`
      )
    }).pipe(Effect.scoped), liveTimeout)
})
