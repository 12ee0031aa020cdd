import * as net from "node:net"
import { PolicyServer } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { ZenohTransport } from "@chiral/zenoh-transport"
import type { Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { NodeServices } from "@effect/platform-node"
import { Command } from "effect/cli"
import { Console } from "effect"
import { relayTo } from "@chiral/testing/Relay"
import type { WatchLine } from "../src/commands/ProbeWatch.js"
import { CommandFailed } from "../src/commands/Decode.js"
import { legacyActionShape, probe } from "../src/commands/Probe.js"
import * as SimulatedRobot from "../src/SimulatedRobot.js"
import { capture, run } from "./support/RunCommand.js"

const loopback = WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })

/** A small simulated robot on a free loopback port, for the test's scope. */
const startRobot = (options: SimulatedRobot.SimulatedRobotOptions = {}) =>
  Effect.flatMap(Layer.build(loopback), (transport) =>
    SimulatedRobot.make({ cameras: 2, width: 8, height: 6, depth: true, ...options }).pipe(
      Effect.provideContext(transport)
    ))

/** A port nobody listens on (bound once by the OS, then released). */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
)

interface TensorJson {
  readonly dtype: string
  readonly shape: Array<number>
  readonly data?: Array<number>
}
interface ObsJson {
  readonly timestamp: number
  readonly extra: object
  readonly cameras: Array<{
    name: string
    timestamp: number
    intrinsics: TensorJson
    extrinsics: TensorJson
    image: TensorJson
    depth: TensorJson | null
  }>
  readonly proprios: Record<string, TensorJson>
}

describe("chiral probe", () => {
  it.live("--json prints {metadata, reset: {obs, info}, obs}, tensors without data", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const { exit, stderr, stdout } = yield* run(probe, [robot.server.address, "--json"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.deepStrictEqual(stderr, [])
      assert.strictEqual(stdout.length, 1)
      const report = JSON.parse(stdout[0]!) as Record<string, unknown>
      assert.deepStrictEqual(Object.keys(report), ["metadata", "reset", "obs"])
      assert.deepStrictEqual(report["metadata"], { cameras: ["cam_0", "cam_1"], action_shape: [1, 7] })
      const reset = report["reset"] as { obs: ObsJson; info: object }
      assert.deepStrictEqual(Object.keys(reset), ["obs", "info"])
      assert.deepStrictEqual(reset.info, {})
      for (const obs of [reset.obs, report["obs"] as ObsJson]) {
        assert.deepStrictEqual(Object.keys(obs), ["timestamp", "extra", "cameras", "proprios"])
        assert.deepStrictEqual(obs.cameras.map((c) => c.name), ["cam_0", "cam_1"])
        const cam = obs.cameras[0]!
        assert.deepStrictEqual(cam.image, { dtype: "uint8", shape: [6, 8, 3] })
        assert.deepStrictEqual(cam.depth, { dtype: "float32", shape: [6, 8] })
        assert.deepStrictEqual(cam.intrinsics, { dtype: "float64", shape: [3, 3] })
        assert.deepStrictEqual(cam.extrinsics, { dtype: "float64", shape: [4, 4] })
        assert.isAbove(cam.timestamp, 0)
        assert.deepStrictEqual(obs.proprios, {
          joint_pos: { dtype: "float32", shape: [7] },
          joint_vel: { dtype: "float32", shape: [7] }
        })
      }
    }))

  it.live("--json --full carries every element", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ cameras: 1, fps: 0 })
      const { exit, stdout } = yield* run(probe, [robot.server.address, "--json", "--full"])
      assert.isTrue(Exit.isSuccess(exit))
      const obs = (JSON.parse(stdout[0]!) as { obs: ObsJson }).obs
      const cam = obs.cameras[0]!
      assert.deepStrictEqual(cam.image.data, Array.from(SimulatedRobot.syntheticImage(0, 0, 8, 6)))
      assert.deepStrictEqual(cam.depth!.data, Array.from(SimulatedRobot.syntheticDepth(0, 0, 8, 6)))
      assert.deepStrictEqual(cam.intrinsics.data, [7.5, 0, 4, 0, 7.5, 3, 0, 0, 1])
      assert.deepStrictEqual(cam.extrinsics.data, SimulatedRobot.extrinsicsAt(0, 0, 0))
      assert.strictEqual(obs.proprios["joint_pos"]!.data!.length, 7)
    }))

  it.live("--step takes one legacy step with a zero [1, D] action instead of getObs", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ actionDim: 4, episodeSteps: 1 })
      const { exit, stdout } = yield* run(probe, [robot.server.address, "--json", "--step"])
      assert.isTrue(Exit.isSuccess(exit))
      const report = JSON.parse(stdout[0]!) as Record<string, Record<string, unknown>>
      assert.deepStrictEqual(Object.keys(report), ["metadata", "reset", "step"])
      const { obs, ...rest } = report["step"]!
      assert.deepStrictEqual(rest, { reward: 0, terminated: true, truncated: false, info: {} })
      assert.strictEqual((obs as ObsJson).cameras.length, 2)
      assert.strictEqual(yield* robot.actionsApplied, 1)
      assert.strictEqual(yield* robot.episodeStep, 1)
    }))

  it.live("--step follows a C++ server's action_N/action_D strings", () =>
    Effect.gen(function*() {
      const received: Array<Tensor> = []
      const server = yield* PolicyServer.make({
        cameras: [{ name: "cam_0", width: 4, height: 2 }],
        handlers: {
          getMetadata: Effect.succeed({ cameras: "cam_0", action_N: "2", action_D: "3" }),
          reset: Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs()).pipe(Effect.map((obs) => ({ obs }))),
          applyAction: () => Effect.void,
          step: (action) =>
            Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs()).pipe(
              Effect.map((obs) => {
                received.push(action)
                return { obs, reward: 1.5 }
              })
            )
        }
      }).pipe(Effect.provideContext(yield* Layer.build(loopback)))
      const { exit, stdout } = yield* run(probe, [server.address, "--step"])
      assert.isTrue(Exit.isSuccess(exit))
      assert.strictEqual(received.length, 1)
      assert.deepStrictEqual(received[0]!.shape, [2, 3])
      assert.deepStrictEqual(Array.from(received[0]!.data as Float32Array), [0, 0, 0, 0, 0, 0])
      assert.include(stdout.join("\n"), "step  reward 1.5  terminated false  truncated false  info {}")
    }))

  it.live("--json --full: NaN, +Inf, -Inf and -0 in metadata, proprios and reward print as valid JSON, each distinct", () =>
    Effect.gen(function*() {
      const observe = Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs())
      const server = yield* PolicyServer.make({
        cameras: [],
        proprios: [{ name: "p", size: 4 }],
        handlers: {
          getMetadata: Effect.succeed({ action_shape: [1, 2], gain: NaN, limits: [-Infinity, Infinity] }),
          reset: Effect.map(observe, (obs) => ({ obs })),
          applyAction: () => Effect.void,
          step: () => Effect.map(observe, (obs) => ({ obs, reward: NaN }))
        }
      }).pipe(Effect.provideContext(yield* Layer.build(loopback)))
      yield* server.updateProprio("p", [NaN, Infinity, -Infinity, -0])
      const { exit, stdout } = yield* run(probe, [server.address, "--json", "--full", "--step"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      const report = JSON.parse(stdout[0]!) as {
        metadata: unknown
        step: { reward: unknown; obs: ObsJson }
      }
      assert.deepStrictEqual(report.metadata, { action_shape: [1, 2], gain: "NaN", limits: ["-Infinity", "Infinity"] })
      assert.strictEqual(report.step.reward, "NaN")
      const data: Array<unknown> = report.step.obs.proprios["p"]!.data!
      assert.deepStrictEqual(data.slice(0, 3), ["NaN", "Infinity", "-Infinity"])
      assert.isTrue(Object.is(data[3], -0))
    }))

  it.live("prints a readable summary: metadata, reset and obs with each camera and proprio", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ fps: 0 })
      const { exit, stdout } = yield* run(probe, [robot.server.address])
      assert.isTrue(Exit.isSuccess(exit))
      const lines = stdout.join("\n").split("\n")
      assert.strictEqual(lines[0], `connected to ${robot.server.address}`)
      assert.strictEqual(lines[1], "metadata {\"cameras\":[\"cam_0\",\"cam_1\"],\"action_shape\":[1,7]}")
      assert.strictEqual(lines[2], "reset  info {}")
      assert.match(lines[3]!, /^ {2}timestamp \d+\.\d{6} {2}2 cameras {2}extra \{\}$/)
      assert.match(lines[4]!, /^ {2}cam_0 {2}ts \d+\.\d{6} {2}image uint8\[6, 8, 3\] min \d+ max \d+ {2}depth float32\[6, 8\] min 1 max 1\.83333$/)
      assert.strictEqual(lines[5], "    K fx=7.5 fy=7.5 cx=4 cy=3  T t=[0.0000, 0.0000, 0.3000]")
      assert.include(lines, "obs")
      assert.strictEqual(lines.filter((l) => l.startsWith("  joint_pos  float32[7] [")).length, 2)
    }))

  it.live("an unreachable server: the waiting line, then after --timeout one line and a failure", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const uri = `ws://127.0.0.1:${port}`
      const { exit, stderr, stdout } = yield* run(probe, [uri, "--timeout", "0.3"])
      assert.isTrue(Exit.isFailure(exit))
      const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.instanceOf(reason?._tag === "Fail" ? reason.error : undefined, CommandFailed)
      assert.deepStrictEqual(stdout, [`chiral: waiting for server at ${uri} …`])
      assert.deepStrictEqual(stderr, [`chiral probe: no server at ${uri} after 0.3 s`])

      // with --json the waiting line goes to stderr, keeping stdout for JSON only
      const json = yield* run(probe, [uri, "--timeout", "0.2", "--json"])
      assert.deepStrictEqual(json.stdout, [])
      assert.deepStrictEqual(json.stderr, [`chiral: waiting for server at ${uri} …`, `chiral probe: no server at ${uri} after 0.2 s`])
    }))

  it.effect("rejects an address it cannot use, in one line", () =>
    Effect.gen(function*() {
      const unknown = yield* run(probe, ["http://127.0.0.1:8765"])
      assert.isTrue(Exit.isFailure(unknown.exit))
      assert.deepStrictEqual(unknown.stderr, [
        "chiral probe: unsupported address \"http://127.0.0.1:8765\": expected ws://host:port (WebSocket) or tcp/host:port (Zenoh)"
      ])
      const mismatch = yield* run(probe, ["ws://127.0.0.1:8765", "--protocol", "zenoh"])
      assert.isTrue(Exit.isFailure(mismatch.exit))
      assert.deepStrictEqual(mismatch.stderr, [
        "chiral probe: --protocol zenoh does not match \"ws://127.0.0.1:8765\": Zenoh addresses look like tcp/host:7447"
      ])
      const hzAlone = yield* run(probe, ["ws://127.0.0.1:8765", "--hz", "5"])
      assert.isTrue(Exit.isFailure(hzAlone.exit))
      assert.deepStrictEqual(hzAlone.stderr, ["chiral probe: --hz 5 applies to --watch only"])
    }))

  it.live("probes a server on Zenoh (tcp/host:port), with and without a key prefix", () =>
    Effect.gen(function*() {
      const transport = yield* Layer.build(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0, keyPrefix: "lab/a" }))
      const robot = yield* SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      const uri = robot.server.address
      assert.match(uri, /^tcp\/127\.0\.0\.1:\d+$/)

      const { exit, stdout } = yield* run(probe, [uri, "--key-prefix", "lab/a", "--json", "--step", "--timeout", "60"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      const report = JSON.parse(stdout[0]!) as Record<string, unknown>
      assert.deepStrictEqual(Object.keys(report), ["metadata", "reset", "step"])
      assert.deepStrictEqual(report["metadata"], { cameras: ["cam_0"], action_shape: [1, 7] })

      // Without the prefix nobody answers on the reference keys.
      const other = yield* run(probe, [uri, "--timeout", "1"])
      assert.isTrue(Exit.isFailure(other.exit))
    }))

  it.live("--max-message-size: an observation over it fails in one clear line; a size that is none is refused", () =>
    Effect.gen(function*() {
      const transport = yield* Layer.build(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0 }))
      // 320x240 RGB + float32 depth: 537 600 bytes of tensors, fragmented over Zenoh
      const robot = yield* SimulatedRobot.make({ cameras: 1, width: 320, height: 240, depth: true }).pipe(
        Effect.provideContext(transport)
      )
      const uri = robot.server.address
      const small = yield* run(probe, [uri, "--max-message-size", "256KiB", "--timeout", "30"])
      assert.isTrue(Exit.isFailure(small.exit))
      assert.strictEqual(small.stderr.length, 1)
      assert.match(small.stderr[0]!, /^chiral probe: tcp\/127\.0\.0\.1:\d+: reset: Disconnected /)
      assert.include(small.stderr[0]!, "over this side's limit of 256 KiB (262144 bytes)")
      assert.include(small.stderr[0]!, "--max-message-size")
      const enough = yield* run(probe, [uri, "--max-message-size", "1MiB", "--json"])
      assert.isTrue(Exit.isSuccess(enough.exit), String(enough.exit))
      const bad = yield* run(probe, [uri, "--max-message-size", "lots"])
      assert.deepStrictEqual(bad.stderr, [
        "chiral probe: --max-message-size \"lots\": expected a size such as 1GiB, 300MB or 16777216 (bytes)"
      ])
      const ws = yield* run(probe, ["ws://127.0.0.1:1", "--max-message-size", "1GiB"])
      assert.deepStrictEqual(ws.stderr, [
        "chiral probe: --max-message-size applies to Zenoh clients only (a WebSocket client takes messages of any size)"
      ])
    }))

  it("derives the legacy action shape from the metadata", () => {
    assert.deepStrictEqual(legacyActionShape({ action_shape: [1, 7] }), [1, 7])
    assert.deepStrictEqual(legacyActionShape({ action_shape: [6] }), [1, 6])
    assert.deepStrictEqual(legacyActionShape({ action_shape: [2, 3, 4] }), [2, 12])
    assert.deepStrictEqual(legacyActionShape({ action_shape: "[1,9]" }), [1, 9])
    assert.deepStrictEqual(legacyActionShape({ action_N: "1", action_D: "7", cameras: "cam_0" }), [1, 7])
    assert.deepStrictEqual(legacyActionShape({ action_D: 5 }), [1, 5])
    assert.deepStrictEqual(legacyActionShape({}), [1, 7])
    assert.deepStrictEqual(legacyActionShape({ action_shape: [0, 7] }), [1, 7])
  })

  it.live("--timeout bounds the whole wait: a port that accepts TCP but never answers the handshake fails within it, saying so", () =>
    Effect.gen(function*() {
      // accepts, reads, never answers (a Zenoh port, a frozen server, another service)
      const silent = yield* Effect.acquireRelease(
        Effect.callback<net.Server>((resume) => {
          const server = net.createServer((socket) => socket.on("error", () => {}))
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.close())
      )
      const uri = `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
      const started = performance.now()
      const { exit, stderr } = yield* run(probe, [uri, "--timeout", "1"])
      const elapsed = performance.now() - started
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(stderr.length, 1, stderr.join("\n"))
      assert.include(stderr[0], `chiral probe: something answered at ${uri} but did not speak WebSocket`)
      // the handshake was given what was left of the caller's 1 s, not its own 10 s
      assert.match(stderr[0]!, /no WebSocket handshake answer within (0\.\d+|1) s/)
      assert.isBelow(elapsed, 9000)
    }))

  it.live("a metadata map of 2 MiB is accepted by default; --max-header-bytes lowers the limit", () =>
    Effect.gen(function*() {
      const description = "x".repeat(2 * 1024 * 1024)
      const server = yield* PolicyServer.make({
        cameras: [{ name: "cam_0", width: 4, height: 2 }],
        handlers: {
          getMetadata: Effect.succeed({ robot_description: description, action_shape: [1, 7] }),
          reset: Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs()).pipe(Effect.map((obs) => ({ obs }))),
          applyAction: () => Effect.void
        }
      }).pipe(Effect.provideContext(yield* Layer.build(loopback)))
      const ok = yield* run(probe, [server.address, "--json"])
      assert.isTrue(Exit.isSuccess(ok.exit), ok.stderr.join("\n"))
      const report = JSON.parse(ok.stdout[0]!) as { metadata: { robot_description: string } }
      assert.strictEqual(report.metadata.robot_description.length, description.length)

      const limited = yield* run(probe, [server.address, "--max-header-bytes", "1048576"])
      assert.isTrue(Exit.isFailure(limited.exit))
      assert.match(limited.stderr.join("\n"), /metadata: Malformed \(header_len: \d+ bytes, more than the 1048576-byte header limit\)/)

      const bad = yield* run(probe, [server.address, "--max-header-bytes", "0"])
      assert.deepStrictEqual(bad.stderr, ["chiral probe: --max-header-bytes 0: expected an integer from 1 to 4294967295"])
    }))

  it.live("--watch prints one line per second with rate, latency, state and reconnects; a lost connection shows and heals", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ cameras: 1 })
      const relay = yield* relayTo(Number(robot.server.address.split(":").pop()))
      const out = capture()
      const watching = yield* Command.runWith(probe, { version: "test" })(
        [`ws://127.0.0.1:${relay.port}`, "--watch", "--hz", "20", "--json"]
      ).pipe(
        Effect.provide(NodeServices.layer),
        Effect.provideService(Console.Console, out.console),
        Effect.forkScoped
      )
      const lines = () => out.stdout.map((line) => JSON.parse(line) as WatchLine)
      /** Waits for a line (from the `from`-th on) that `check` accepts. */
      const line = (from: number, check: (l: WatchLine) => boolean) =>
        Effect.sync(() => lines().slice(from).find(check)).pipe(
          Effect.filterOrFail((found): found is WatchLine => found !== undefined),
          Effect.retry({ schedule: Schedule.spaced(50) }),
          Effect.orDie
        )
      const healthy = yield* line(0, (l) => l.state === "connected" && l.obs_hz > 0)
      assert.strictEqual(healthy.reconnects, 0)
      assert.isAbove(healthy.latency_ms.p50!, 0)
      assert.isAtLeast(healthy.latency_ms.max!, healthy.latency_ms.p50!)
      assert.match(healthy.time, /^\d{4}-\d\d-\d\dT/)

      // cut, and new connections held: the client keeps trying, the lines say so
      yield* relay.hold()
      yield* relay.cut()
      const seen = out.stdout.length
      yield* line(seen, (l) => l.state === "reconnecting" && l.obs_hz === 0)
      yield* relay.release()
      const healed = yield* line(seen, (l) => l.state === "connected" && l.reconnects === 1 && l.obs_hz > 0)
      assert.strictEqual(healed.reconnects, 1)
      yield* Fiber.interrupt(watching)
      assert.deepStrictEqual(out.stderr.filter((l) => !l.includes("chiral:")), [])
    }))
})
