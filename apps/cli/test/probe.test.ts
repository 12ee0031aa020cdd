import * as net from "node:net"
import { PolicyServer, TransportError, unresolvedHost } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { ZenohTransport } from "@chiral/zenoh-transport"
import type { Tensor } from "@chiral/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { NodeServices } from "@effect/platform-node"
import { Command } from "effect/cli"
import { Console } from "effect"
import { relayTo } from "@chiral/testing/Relay"
import * as SilentServer from "@chiral/testing/SilentServer"
import { formatLine, type WatchLine } from "../src/commands/ProbeWatch.js"
import { CommandFailed } from "../src/commands/Decode.js"
import { connectFailure, legacyActionShape, probe } from "../src/commands/Probe.js"
import { shown } from "../src/Transports.js"
import * as SimulatedRobot from "../src/SimulatedRobot.js"
import { capture, run } from "./support/RunCommand.js"

const loopback = WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 })

/** A small simulated robot on a free loopback port, for the test's scope. */
const startRobot = (options: SimulatedRobot.SimulatedRobotOptions = {}) =>
  Effect.flatMap(Layer.build(loopback), (transport) =>
    SimulatedRobot.make({ cameras: 2, width: 8, height: 6, depth: true, ...options }).pipe(
      Effect.provideContext(transport)
    ))

/**
 * A robot that notes every request it handles ("metadata", "reset", "obs",
 * "step", "apply_action"), with `metadata`; `received` holds the stepped actions.
 */
const countingRobot = (metadata: Record<string, unknown> = { action_shape: [1, 3] }) =>
  Effect.gen(function*() {
    const calls: Array<string> = []
    const received: Array<Tensor> = []
    const observe = Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs())
    const note = (name: string) => Effect.sync(() => void calls.push(name))
    const server = yield* PolicyServer.make({
      cameras: [{ name: "cam_0", width: 4, height: 2 }],
      handlers: {
        getMetadata: Effect.as(note("metadata"), metadata),
        reset: Effect.andThen(note("reset"), Effect.map(observe, (obs) => ({ obs }))),
        getObs: Effect.andThen(note("obs"), observe),
        applyAction: () => note("apply_action"),
        step: (action) =>
          Effect.andThen(
            Effect.sync(() => received.push(action)).pipe(Effect.andThen(note("step"))),
            Effect.map(observe, (obs) => ({ obs, reward: 1.5 }))
          )
      }
    }).pipe(Effect.provideContext(yield* Layer.build(loopback)))
    return { address: server.address, calls, received }
  })

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
  it.live("by default only reads: metadata and one observation, no reset, no action, and says so", () =>
    Effect.gen(function*() {
      const robot = yield* countingRobot()
      const { exit, stderr, stdout } = yield* run(probe, [robot.address])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.deepStrictEqual(robot.calls, ["metadata", "obs"])
      assert.deepStrictEqual(stderr, [])
      const lines = stdout.join("\n").split("\n")
      assert.strictEqual(
        lines[1],
        "read only: metadata and one observation (get_obs); the robot was not reset and no action was sent"
      )
      assert.notInclude(lines.join("\n"), "reset  info")

      const json = yield* run(probe, [robot.address, "--json"])
      assert.isTrue(Exit.isSuccess(json.exit), String(json.exit))
      assert.deepStrictEqual(robot.calls, ["metadata", "obs", "metadata", "obs"])
      assert.deepStrictEqual(Object.keys(JSON.parse(json.stdout[0]!) as object), ["metadata", "obs"])
    }))

  it.live("--reset --json prints {metadata, reset: {obs, info}, obs}, tensors without data; the reset is announced on stderr", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const { exit, stderr, stdout } = yield* run(probe, [robot.server.address, "--json", "--reset"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.deepStrictEqual(stderr, ["chiral probe: resetting the robot (--reset)"])
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
      assert.strictEqual(yield* robot.actionsApplied, 0)
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

  it.live("--step resets, then takes one legacy step with the --step-action given instead of getObs, saying so first", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ actionDim: 4, episodeSteps: 1 })
      const { exit, stderr, stdout } = yield* run(probe, [robot.server.address, "--json", "--step", "--step-action", "0.5,0,-0.25,0"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.deepStrictEqual(stderr, [
        "chiral probe: resetting the robot, then sending it the action float32[1, 4] [0.5, 0, -0.25, 0] (--step)"
      ])
      const report = JSON.parse(stdout[0]!) as Record<string, Record<string, unknown>>
      assert.deepStrictEqual(Object.keys(report), ["metadata", "reset", "step"])
      const { obs, ...rest } = report["step"]!
      assert.deepStrictEqual(rest, {
        action: { dtype: "float32", shape: [1, 4], data: [0.5, 0, -0.25, 0] },
        reward: 0,
        terminated: true,
        truncated: false,
        info: {}
      })
      assert.strictEqual((obs as ObsJson).cameras.length, 2)
      assert.strictEqual(yield* robot.actionsApplied, 1)
      assert.strictEqual(yield* robot.episodeStep, 1)
    }))

  it.live("--step follows a C++ server's action_N/action_D strings and says what it did", () =>
    Effect.gen(function*() {
      const robot = yield* countingRobot({ cameras: "cam_0", action_N: "2", action_D: "3" })
      const { exit, stdout } = yield* run(probe, [robot.address, "--step", "--step-action", "1,2,3,4,5,6"])
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.deepStrictEqual(robot.calls, ["metadata", "reset", "step"])
      assert.deepStrictEqual(robot.received[0]!.shape, [2, 3])
      assert.deepStrictEqual(Array.from(robot.received[0]!.data as Float32Array), [1, 2, 3, 4, 5, 6])
      const text = stdout.join("\n")
      assert.include(text, "reset the robot, then sent it the action float32[2, 3] [1, 2, 3, 4, 5, 6] in one legacy step (--step)")
      assert.include(text, "step  reward 1.5  terminated false  truncated false  info {}")
    }))

  it.live("--step: no action without --step-action, and none whose count is not the robot's; refused before the reset", () =>
    Effect.gen(function*() {
      const robot = yield* countingRobot({ action_shape: [1, 3] })
      const bare = yield* run(probe, [robot.address, "--step"])
      assert.isTrue(Exit.isFailure(bare.exit))
      assert.deepStrictEqual(bare.stderr, [
        "chiral probe: --step sends the robot an action: give it with --step-action, e.g. --step-action 0,0,0,0,0,0,0 for a [1, 7] action (there is no default: on an arm that takes joint positions, 0 moves a joint to 0 rad)"
      ])
      const count = yield* run(probe, [robot.address, "--step", "--step-action", "0,0,0,0,0,0,0"])
      assert.isTrue(Exit.isFailure(count.exit))
      assert.deepStrictEqual(count.stderr, [
        "chiral probe: --step-action has 7 values; the robot's metadata gives the action shape [1, 3]: give 3 values, row-major"
      ])
      assert.deepStrictEqual(robot.calls, ["metadata"])
      // without an action shape in the metadata, the count given is D
      const unsaid = yield* countingRobot({})
      const free = yield* run(probe, [unsaid.address, "--step", "--step-action", "0.1,0.2"])
      assert.isTrue(Exit.isSuccess(free.exit), String(free.exit))
      assert.deepStrictEqual(unsaid.received[0]!.shape, [1, 2])
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
      const { exit, stdout } = yield* run(probe, [server.address, "--json", "--full", "--step", "--step-action", "0,0"])
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

  it.live("prints a readable summary: what was done, metadata, reset and obs with each camera and proprio", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ fps: 0 })
      const { exit, stdout } = yield* run(probe, [robot.server.address, "--reset"])
      assert.isTrue(Exit.isSuccess(exit))
      const lines = stdout.join("\n").split("\n")
      assert.strictEqual(lines[0], `connected to ${robot.server.address}`)
      assert.strictEqual(lines[1], "reset the robot (--reset), then read one observation (get_obs); no action sent")
      assert.strictEqual(lines[2], "metadata {\"cameras\":[\"cam_0\",\"cam_1\"],\"action_shape\":[1,7]}")
      assert.strictEqual(lines[3], "reset  info {}")
      assert.match(lines[4]!, /^ {2}timestamp \d+\.\d{6} {2}2 cameras {2}extra \{\}$/)
      assert.match(lines[5]!, /^ {2}cam_0 {2}ts \d+\.\d{6} {2}image uint8\[6, 8, 3\] min \d+ max \d+ {2}depth float32\[6, 8\] min 1 max 1\.83333$/)
      assert.strictEqual(lines[6], "    K fx=7.5 fy=7.5 cx=4 cy=3  T t=[0.0000, 0.0000, 0.3000]")
      assert.include(lines, "obs")
      assert.strictEqual(lines.filter((l) => l.startsWith("  joint_pos  float32[7] [")).length, 2)
    }))

  it.live("an unreachable server: the waiting line, then after --timeout one line and a failure", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const uri = `ws://127.0.0.1:${port}`
      // long enough that a stall of this process is unlikely to take the whole wait before the first refusal
      const { exit, stderr, stdout } = yield* run(probe, [uri, "--timeout", "1.5"])
      assert.isTrue(Exit.isFailure(exit))
      const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.instanceOf(reason?._tag === "Fail" ? reason.error : undefined, CommandFailed)
      assert.deepStrictEqual(stdout, [`chiral: waiting for server at ${uri} …`])
      assert.deepStrictEqual(stderr, [`chiral probe: no server at ${uri} after 1.5 s`])

      // with --json the waiting line goes to stderr, keeping stdout for JSON only
      const json = yield* run(probe, [uri, "--timeout", "1", "--json"])
      assert.deepStrictEqual(json.stdout, [])
      assert.deepStrictEqual(json.stderr, [`chiral: waiting for server at ${uri} …`, `chiral probe: no server at ${uri} after 1 s`])
    }))

  it("a host name that does not resolve is named with the resolver's answer, not taken for a server to wait for", () => {
    const uri = "ws://robto.local:8765/?token=secret"
    const missing = unresolvedHost({ address: shown(uri), host: "robto.local", code: "ENOTFOUND" })
    assert.strictEqual(connectFailure(uri, 10, missing), `cannot resolve host "robto.local" (ENOTFOUND) in ws://robto.local:8765/?token=***`)
    const later = unresolvedHost({ address: "tcp/robot.local:7447", host: "robot.local", code: "EAI_AGAIN" })
    assert.strictEqual(
      connectFailure("tcp/robot.local:7447", 10, later),
      `cannot resolve host "robot.local" (EAI_AGAIN: a temporary failure: the resolver could not answer now) in tcp/robot.local:7447 after trying for 10 s`
    )
    const refused = new TransportError({ reason: "Unavailable", address: "ws://127.0.0.1:1", detail: "connect ECONNREFUSED 127.0.0.1:1" })
    assert.strictEqual(connectFailure("ws://127.0.0.1:1", 10, refused), "no server at ws://127.0.0.1:1 after 10 s")
  })

  for (const uri of ["ws://nosuchhost.invalid:8765", "tcp/nosuchhost.invalid:7447"]) {
    it.live(`${uri} (the reserved .invalid never resolves): one line naming the host, not "no server"`, () =>
      Effect.gen(function*() {
        const { exit, stderr } = yield* run(probe, [uri, "--timeout", "3"])
        assert.isTrue(Exit.isFailure(exit))
        // ENOTFOUND at once where a DNS server answers; a temporary failure or no answer after --timeout where none can be reached
        assert.strictEqual(stderr.length, 1, stderr.join("\n"))
        assert.match(stderr[0]!, /^chiral probe: cannot resolve host "nosuchhost\.invalid" \((ENOTFOUND|EAI_[A-Z]+|ETIMEOUT)[):]/)
        assert.include(stderr[0]!, ` in ${uri}`)
      }))
  }

  it.live("a robot that closes the connection says why in the one line: its reset failed (1011), its onConnect refused the probe (1008)", () =>
    Effect.gen(function*() {
      const observe = Effect.flatMap(PolicyServer.PolicyServer, (s) => s.makeObs())
      const robot = (handlers: Partial<PolicyServer.PolicyServerConfig<Error, PolicyServer.PolicyServer>["handlers"]>) =>
        Effect.flatMap(Layer.build(loopback), (transport) =>
          PolicyServer.make({
            cameras: [{ name: "cam_0", width: 4, height: 2 }],
            handlers: { reset: Effect.map(observe, (obs) => ({ obs })), applyAction: () => Effect.void, ...handlers }
          }).pipe(Effect.provideContext(transport)))
      const failing = yield* robot({ reset: Effect.fail(new Error("e-stop pressed")) })
      const reset = yield* run(probe, [failing.address, "--reset", "--timeout", "30"])
      assert.isTrue(Exit.isFailure(reset.exit))
      assert.deepStrictEqual(reset.stderr, [
        "chiral probe: resetting the robot (--reset)",
        `chiral probe: ${failing.address}: reset: Disconnected (closed by the server: 1011 chiral: reset failed: e-stop pressed)`
      ])
      const refusing = yield* robot({ onConnect: () => Effect.fail(new Error("another policy has the arm")) })
      const refused = yield* run(probe, [refusing.address, "--timeout", "30"])
      assert.isTrue(Exit.isFailure(refused.exit))
      assert.deepStrictEqual(refused.stderr, [
        `chiral probe: ${refusing.address}: metadata: Disconnected (closed by the server: 1008 chiral: refused by the robot's onConnect: another policy has the arm)`
      ])
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
      const refusals: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--full"], "--full applies to --json only"],
        [["--step-action", "0"], "--step-action applies to --step only"],
        [["--watch", "--reset"], "--reset does not apply to --watch, which only requests observations"],
        [["--watch", "--step", "--step-action", "0"], "--step does not apply to --watch, which only requests observations"],
        [["--watch", "--json", "--full"], "--full does not apply to --watch, which only requests observations"],
        [
          ["--step", "--step-action", "0,x"],
          "--step-action \"0,x\": \"x\" is not a number (expected numbers separated by commas, e.g. 0.1,0,-0.2)"
        ],
        [["--step", "--step-action", "0,,1"], "--step-action \"0,,1\": \"\" is not a number (expected numbers separated by commas, e.g. 0.1,0,-0.2)"],
        [["--step", "--step-action", "1e39"], "--step-action 1e39: 1e39 is not finite as a float32"]
      ]
      for (const [args, message] of refusals) {
        const refused = yield* run(probe, ["ws://127.0.0.1:8765", ...args])
        assert.isTrue(Exit.isFailure(refused.exit), args.join(" "))
        assert.deepStrictEqual(refused.stderr, [`chiral probe: ${message}`])
      }
    }))

  it.live("probes a server on Zenoh (tcp/host:port), with and without a key prefix", () =>
    Effect.gen(function*() {
      const transport = yield* Layer.build(ZenohTransport.layerServer({ host: "127.0.0.1", port: 0, keyPrefix: "lab/a" }))
      const robot = yield* SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      const uri = robot.server.address
      assert.match(uri, /^tcp\/127\.0\.0\.1:\d+$/)

      const { exit, stdout } = yield* run(probe, [
        uri,
        "--key-prefix",
        "lab/a",
        "--json",
        "--step",
        "--step-action",
        "0,0,0,0,0,0,0",
        "--timeout",
        "60"
      ])
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
      assert.match(small.stderr[0]!, /^chiral probe: tcp\/127\.0\.0\.1:\d+: obs_request: Disconnected /)
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
    assert.strictEqual(legacyActionShape({}), undefined)
    assert.strictEqual(legacyActionShape({ action_shape: [0, 7] }), undefined)
  })

  it.live("--timeout bounds the whole wait: a port that accepts TCP but never answers the handshake fails within it, saying so", () =>
    Effect.gen(function*() {
      // accepts, reads, never answers (a Zenoh port, a frozen server, another service)
      const uri = `ws://127.0.0.1:${yield* SilentServer.listen}`
      const started = performance.now()
      // 3 s, not 1: a busy CI machine can stall a worker's event loop for a second
      const { exit, stderr } = yield* run(probe, [uri, "--timeout", "3"])
      const elapsed = performance.now() - started
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(stderr.length, 1, stderr.join("\n"))
      assert.include(stderr[0], `chiral probe: something answered at ${uri} but did not speak WebSocket`)
      // the handshake was given what was left of the caller's 3 s, not its own 10 s
      assert.match(stderr[0]!, /no WebSocket handshake answer within ([0-2]\.\d+|3) s/)
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

  it("--watch's line says how long a request has waited once that is over a second", () => {
    const at = { time: "2026-11-30T00:12:04.000Z", obs_hz: 0, latency_ms: { p50: null, max: null }, failed: 0, reconnects: 0 }
    assert.strictEqual(
      formatLine({ ...at, state: "connected", unanswered_s: 2.1 }),
      "00:12:04  obs 0.0 Hz  latency p50 —  max —  failed 0  connected (no answer for 2.1 s)  reconnects 0"
    )
    assert.strictEqual(
      formatLine({ ...at, state: "connected", unanswered_s: null }),
      "00:12:04  obs 0.0 Hz  latency p50 —  max —  failed 0  connected  reconnects 0"
    )
  })

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
      assert.isNull(healthy.unanswered_s)

      // a robot that stops answering keeps its connection: the line says how long the request has waited
      yield* relay.hold(0)
      const frozen = yield* line(out.stdout.length, (l) => l.unanswered_s !== null)
      assert.strictEqual(frozen.state, "connected")
      assert.isAtLeast(frozen.unanswered_s!, 1)
      yield* relay.release(0)
      yield* line(out.stdout.length, (l) => l.unanswered_s === null && l.obs_hz > 0)

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
