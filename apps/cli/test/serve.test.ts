import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { PolicyClient, ThreadPriority } from "@chiral/core"
import { WebSocketTransport } from "@chiral/websocket"
import { encodeFrame, Tensor } from "@chiral/protocol"
import { encodeApplyAction } from "@chiral/core/ActionFrame"
import { Zenoh } from "@chiral/zenoh"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { serve } from "../src/commands/Serve.js"
import { CommandFailed } from "../src/commands/Decode.js"
import * as SimulatedRobot from "../src/SimulatedRobot.js"
import { run, startServe } from "./support/RunCommand.js"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"

// Frames modelled on field faults, copied from ../shared/field.
const fieldDir = fileURLToPath(new URL("../../../packages/protocol/test/fixtures/field/", import.meta.url))

const small = ["--host", "127.0.0.1", "--port", "0", "--cameras", "2", "--size", "32x24"]

const connect = (address: string) =>
  PolicyClient.make({ quiet: true, requestTimeout: "5 seconds" }).pipe(
    Effect.provide(WebSocketTransport.layerClient(address))
  )

describe("chiral serve", () => {
  it.live("answers metadata, reset, obs_request, apply_action and legacy steps; terminates at --episode-steps", () =>
    Effect.gen(function*() {
      const { address, output } = yield* startServe(serve, [
        ...small,
        "--depth",
        "--proprio",
        "joint_pos:7,gripper:1",
        "--episode-steps",
        "3",
        "--log-actions"
      ])
      assert.match(address, /^ws:\/\/127\.0\.0\.1:\d+$/)
      const client = yield* connect(address)

      assert.deepStrictEqual(yield* client.getMetadata, { cameras: ["cam_0", "cam_1"], action_shape: [1, 7] })

      const reset = yield* client.reset
      assert.deepStrictEqual(reset.info, {})
      assert.deepStrictEqual(reset.obs.cameras.map((c) => c.name), ["cam_0", "cam_1"])
      const cam = reset.obs.cameras[1]!
      assert.deepStrictEqual(cam.image.shape, [24, 32, 3])
      assert.strictEqual(cam.image.dtype, "uint8")
      assert.deepStrictEqual(cam.depth?.shape, [24, 32])
      assert.strictEqual(cam.depth?.dtype, "float32")
      assert.deepStrictEqual(Array.from(cam.intrinsics), [30, 0, 16, 0, 30, 12, 0, 0, 1])
      assert.isAbove(cam.timestamp, 0)
      // the deterministic synthetic image of camera 1 at some phase of its cycle
      const phases = Array.from({ length: SimulatedRobot.framesPerCycle }, (_, p) => SimulatedRobot.syntheticImage(1, p, 32, 24))
      assert.isTrue(phases.some((image) => Buffer.from(image).equals(Buffer.from(cam.image.data as Uint8Array))))
      assert.deepStrictEqual(reset.obs.proprios.map((p) => [p.name, p.data.dtype, p.data.shape]), [
        ["joint_pos", "float32", [7]],
        ["gripper", "float32", [1]]
      ])

      // sensors keep moving: the extrinsics change from frame to frame (wrist camera)
      const moved = yield* client.getObs.pipe(
        Effect.repeat({
          until: (obs) => obs.cameras[0]!.extrinsics[3] !== reset.obs.cameras[0]!.extrinsics[3],
          schedule: Schedule.spaced("20 millis")
        }),
        Effect.timeout("5 seconds")
      )
      assert.isAbove(moved.cameras[0]!.timestamp, reset.obs.cameras[0]!.timestamp)

      // fire-and-forget action: logged with the observation's camera timestamps
      yield* client.sendAction([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
      const zero = Tensor.zeros("float32", [1, 7])
      const steps = []
      for (let i = 0; i < 4; i++) steps.push(yield* client.step(zero))
      assert.deepStrictEqual(steps.map((s) => s.terminated), [false, false, true, true])
      assert.deepStrictEqual(steps.map((s) => [s.reward, s.truncated]), [[0, false], [0, false], [0, false], [0, false]])
      yield* client.reset
      assert.isFalse((yield* client.step(zero)).terminated)

      const lines = output.stdout.map((line) => JSON.parse(line) as { action: Array<number>; obs_timestamps: Record<string, number> })
      assert.strictEqual(lines.length, 6)
      assert.deepStrictEqual(lines[0]!.action, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
      assert.deepStrictEqual(lines[0]!.obs_timestamps, {
        cam_0: moved.cameras[0]!.timestamp,
        cam_1: moved.cameras[1]!.timestamp
      })
      assert.deepStrictEqual(lines[1]!.action, [0, 0, 0, 0, 0, 0, 0])
      assert.deepStrictEqual(Object.keys(lines[5]!.obs_timestamps), ["cam_0", "cam_1"])
      // nothing but the JSON lines on stdout; the listening line is on stderr
      assert.isTrue(output.stdout.every((line) => line.startsWith("{\"action\":[")))
    }))

  it.live("the field frame's action [NaN, +Inf, -Inf, -0, 3.4e38, 1, 2] is refused before the handler: not in the action log, one stderr line", () =>
    Effect.gen(function*() {
      const { address, output } = yield* startServe(serve, [...small, "--fps", "0", "--log-actions"])
      const frame = new Uint8Array(fs.readFileSync(path.join(fieldDir, "apply_action_nonfinite.bin")))
      const connection = yield* WebSocketTransport.makeClient(address).connect
      yield* connection.send(frame)
      // apply_action has no reply: wait for the refusal on stderr, then for a good action's log line
      yield* Effect.sync(() => output.stderr.some((line) => line.includes("refused an invalid action"))).pipe(
        Effect.repeat({ until: (seen) => seen, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      const good = Tensor.make("float32", [7], Float32Array.of(1, 2, 3, 4, 5, 6, 7))
      // stamped now on the machine's monotonic clock, the robot's capture clock: after it started
      const stamp = Number(process.hrtime.bigint()) / 1e9
      yield* connection.send(encodeFrame({ type: "apply_action", action: good, obsTimestamps: { cam_0: stamp } }))
      yield* Effect.sync(() => output.stdout.length).pipe(
        Effect.repeat({ until: (n) => n > 0, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      assert.strictEqual(output.stdout.length, 1)
      const logged = JSON.parse(output.stdout[0]!)
      assert.deepStrictEqual(logged.action, [1, 2, 3, 4, 5, 6, 7])
      assert.deepStrictEqual(logged.obs_timestamps, { cam_0: stamp })
      // when (the capture clock: this process's monotonic clock) and from whom it was applied
      assert.isAbove(logged.applied_at, 0)
      assert.isAtMost(logged.applied_at, Number(process.hrtime.bigint()) / 1e9)
      assert.match(logged.connection, /^ws:\/\/127\.0\.0\.1:\d+ ← 127\.0\.0\.1:\d+$/)
      const refused = output.stderr.filter((line) => line.includes("refused an invalid action"))
      assert.strictEqual(refused.length, 1)
      assert.include(refused[0]!, "element 0 is NaN: actions must be finite")
      // how the action log writes non-finite values is pinned on actionLogLines (SimulatedRobot, below)
    }))

  it.live("without --log-actions stdout stays empty; interrupting it closes the port", () =>
    Effect.gen(function*() {
      const { address, fiber, output } = yield* startServe(serve, [...small, "--proprio", ""])
      const obs = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* connect(address)
        yield* client.sendAction([1, 2, 3, 4, 5, 6, 7])
        return yield* client.getObs
      }))
      assert.deepStrictEqual(obs.proprios, [])
      assert.isNull(obs.cameras[0]!.depth)
      yield* Fiber.interrupt(fiber)
      const after = yield* WebSocketTransport.makeClient(address).connect.pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(after.reason, "Unavailable")
      assert.deepStrictEqual(output.stdout, [])
      assert.match(output.stderr[0]!, /^chiral serve: listening on ws:\/\/127\.0\.0\.1:\d+ \(2 cameras 32x24 rgb uint8, no proprios, action_shape \[1, 7\], episode 200 steps, 30 Hz, joints move ≤ 0\.05 rad per action\)$/)
    }))

  const badFlags: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
    [["--size", "640"], "chiral serve: --size \"640\": expected WIDTHxHEIGHT, e.g. 640x480"],
    [["--size", "0x480"], "chiral serve: --size 0x480: width and height must be between 1 and 16384"],
    [["--proprio", "joint_pos"], "chiral serve: --proprio \"joint_pos\": expected name:size, e.g. joint_pos:7"],
    [["--proprio", "a:1,a:2"], "chiral serve: --proprio: a is given twice"],
    [["--port", "70000"], "chiral serve: --port 70000: expected an integer from 0 to 65535"],
    [["--cameras", "-1"], "chiral serve: --cameras -1: expected an integer from 0 to 256"],
    [["--target", "0.1,0.2"], "chiral serve: --target 0.1,0.2: 2 joint positions, the action has 7 (--action-dim)"],
    [["--target", "0,0,x,0,0,0,0"], "chiral serve: --target \"0,0,x,0,0,0,0\": \"x\" is not a number (rad)"],
    [["--target", "0,0,4,0,0,0,0"], "chiral serve: --target 0,0,4,0,0,0,0: joint positions must be within ±π rad"],
    [["--max-step", "0"], "chiral serve: --max-step 0: expected a number > 0"],
    [["--max-action-age", "0"], "chiral serve: --max-action-age 0: expected seconds, more than 0"],
    [["--action-timeout", "-1"], "chiral serve: --action-timeout -1: expected seconds, more than 0"],
    [["--ping-interval", "-2"], "chiral serve: --ping-interval -2: expected seconds, more than 0 (0 turns it off)"],
    [["--ping-timeout", "0"], "chiral serve: --ping-timeout 0: expected seconds, more than 0"],
    [["--drop-unstamped"], "chiral serve: --drop-unstamped applies with --max-action-age only"],
    [["--token", ""], "chiral serve: --token: the token is empty"],
    [
      ["--protocol", "zenoh", "--token", "t"],
      "chiral serve: --token applies to --protocol websocket only: Zenoh's protocol has no access token"
    ],
    [["--protocol", "zenoh", "--ping-interval", "5"], "chiral serve: --ping-interval applies to --protocol websocket only"],
    [["--max-message-size", "12X"], "chiral serve: --max-message-size \"12X\": expected a size such as 1GiB, 300MB or 16777216 (bytes)"],
    [["--max-message-size", "0"], "chiral serve: --max-message-size 0: expected from 1 byte to 4 GiB"]
  ]
  for (const [args, message] of badFlags) {
    it.effect(`${args.join(" ")} fails with one line`, () =>
      Effect.gen(function*() {
        const { exit, stderr, stdout } = yield* run(serve, ["--host", "127.0.0.1", ...(args.includes("--port") ? [] : ["--port", "0"]), ...args])
        assert.isTrue(Exit.isFailure(exit))
        const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        assert.instanceOf(reason?._tag === "Fail" ? reason.error : undefined, CommandFailed)
        assert.deepStrictEqual(stderr, [message])
        assert.deepStrictEqual(stdout, [])
      }))
  }

  it.live("--task: joints follow the actions (at most --max-step each), the status travels in extra and legacy steps", () =>
    Effect.gen(function*() {
      const { address, output } = yield* startServe(serve, [
        ...small,
        "--proprio",
        "joint_pos:7,joint_vel:7",
        "--fps",
        "0",
        "--target",
        "0.5,0,0,0,0,0,0",
        "--tolerance",
        "0.01",
        "--max-step",
        "0.25"
      ])
      assert.include(output.stderr[0]!, "task: reach [0.5, 0, 0, 0, 0, 0, 0] within 0.01 rad")
      const client = yield* connect(address)
      const joints = (obs: { readonly proprios: ReadonlyArray<{ readonly name: string; readonly data: Tensor }> }, name: string) =>
        Array.from(obs.proprios.find((p) => p.name === name)!.data.data as Float32Array)
      const reset = yield* client.reset
      assert.deepStrictEqual(reset.info, { episode: 1, steps: 0, distance: reset.info["distance"], success: false })
      assert.deepStrictEqual(Object.keys(reset.obs.extra), ["reward", "terminated", "truncated", "info"])
      assert.isFalse(reset.obs.extra["terminated"] as boolean)
      const start = joints(reset.obs, "joint_pos")
      // every joint within ±1 rad of the target (the default spread), not already there
      start.forEach((q, j) => assert.isAtMost(Math.abs(q - (j === 0 ? 0.5 : 0)), 1 + 1e-6))
      assert.isAbove(reset.info["distance"] as number, 0.01)

      // a command to the target moves each joint by at most 0.25 rad toward it
      const target = [0.5, 0, 0, 0, 0, 0, 0]
      yield* client.sendAction(target)
      const obs = yield* client.getObs
      const moved = joints(obs, "joint_pos")
      moved.forEach((q, j) => {
        const wanted = Math.max(-0.25, Math.min(0.25, target[j]! - start[j]!))
        assert.closeTo(q, start[j]! + wanted, 1e-5)
      })
      assert.deepStrictEqual(joints(obs, "joint_vel").map((v) => Math.round(v * 1e5)), moved.map((q, j) => Math.round((q - start[j]!) * 1e5)))

      // legacy steps toward the target: reward 1 and terminated once within 0.01 rad, then held
      let step = yield* client.step(Tensor.make("float32", [1, 7], Float32Array.from(target)))
      for (let i = 0; i < 20 && !step.terminated; i++) {
        step = yield* client.step(Tensor.make("float32", [1, 7], Float32Array.from(target)))
      }
      assert.isTrue(step.terminated)
      assert.strictEqual(step.reward, 1)
      assert.isTrue(step.info["success"] as boolean)
      const done = yield* client.getObs
      assert.deepStrictEqual([done.extra["reward"], done.extra["terminated"], done.extra["truncated"]], [1, true, false])
      yield* client.sendAction([3, 3, 3, 3, 3, 3, 3])
      assert.deepStrictEqual(joints(yield* client.getObs, "joint_pos"), joints(done, "joint_pos"))
      // the next episode starts elsewhere, not terminated
      const next = yield* client.reset
      assert.strictEqual(next.info["episode"], 2)
      assert.isFalse(next.obs.extra["terminated"] as boolean)
      assert.notDeepEqual(joints(next.obs, "joint_pos"), start)
    }))

  it.live("--protocol zenoh --max-message-size: a client sending more is cut off, and the server says why", () =>
    Effect.gen(function*() {
      const { address, output } = yield* startServe(serve, [...small, "--protocol", "zenoh", "--max-message-size", "64KiB"])
      const port = Number(address.split(":").pop())
      const peer = yield* Zenoh.connect({ host: "127.0.0.1", port })
      yield* peer.awaitSubscribers("chiral/c2s")
      // an action of 20 000 floats: 80 kB, fragmented
      yield* peer.put("chiral/c2s", encodeApplyAction([1, 20_000], new Float32Array(20_000), {}))
      const closed = yield* Effect.flip(peer.closed)
      assert.strictEqual(closed._tag, "ZenohCloseReceived")
      const line = yield* Effect.repeat(
        Effect.sync(() => output.stderr.find((l) => l.includes("reassembly"))),
        { until: (l) => l !== undefined, schedule: Schedule.spaced(10) }
      )
      assert.include(line, "limit 65536")
    }))

  it.live("a port in use fails with one line", () =>
    Effect.gen(function*() {
      const { address } = yield* startServe(serve, [...small, "--fps", "0"])
      const port = address.split(":").pop()!
      const { exit, stderr } = yield* run(serve, ["--host", "127.0.0.1", "--port", port])
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(stderr.length, 1)
      assert.match(stderr[0]!, new RegExp(`^chiral serve: cannot listen: Listen \\(ws://127\\.0\\.0\\.1:${port}\\)`))
    }))
})

describe("chiral serve: robot safety", () => {
  const raw = (address: string) => WebSocketTransport.makeClient(address).connect
  /** The first stderr line containing `text`, once printed. */
  const stderrLine = (output: { readonly stderr: ReadonlyArray<string> }, text: string) =>
    Effect.sync(() => output.stderr.find((line) => line.includes(text))).pipe(
      Effect.repeat({ until: (line) => line !== undefined, schedule: Schedule.spaced("10 millis") }),
      Effect.timeout("10 seconds"),
      Effect.map((line) => line!)
    )
  const actionFrame = (values: ReadonlyArray<number>, obsTimestamps: Record<string, number>) =>
    encodeFrame({ type: "apply_action", action: Tensor.make("float32", [values.length], Float32Array.from(values)), obsTimestamps })

  it.live("--max-action-age drops stale actions and NaN never reaches the action log; the settings are printed", () =>
    Effect.gen(function*() {
      // every action judged on its own: these four are sent together
      const { address, output } = yield* startServe(serve, [
        ...small,
        "--log-actions",
        "--max-action-age",
        "2",
        "--single-controller",
        "--apply-every-action"
      ])
      assert.strictEqual(
        yield* stderrLine(output, "robot safety"),
        "chiral serve: robot safety: actions must be finite [action-dim] or [1, action-dim], max action age 2 s, no action watchdog, single controller, every action applied, no token, ping every 20 s, timeout 20 s"
      )
      const client = yield* connect(address)
      // connected first, so that the fresh actions follow their observation at once
      const connection = yield* raw(address)
      // an observation of this robot's that is 2.2 s older than its newest (a
      // margin of 2 s for the fresh ones: a busy machine can stall this process)
      const first = (yield* client.getObs).cameras[0]!.timestamp
      const obs = yield* client.getObs.pipe(
        Effect.repeat({ until: (o) => o.cameras[0]!.timestamp >= first + 2.2, schedule: Schedule.spaced("50 millis") })
      )
      const fresh = Object.fromEntries(obs.cameras.map((c) => [c.name, c.timestamp]))
      // that old observation: stale; NaN; a 6-value action for a 7-dim robot; then a good one
      yield* connection.send(actionFrame([1, 0, 0, 0, 0, 0, 0], { cam_0: first }))
      yield* connection.send(actionFrame([Number.NaN, 0, 0, 0, 0, 0, 0], fresh))
      yield* connection.send(actionFrame([3, 0, 0, 0, 0, 0], fresh))
      // two rows, where the metadata says action_shape [1, 7]
      yield* connection.send(
        encodeFrame({ type: "apply_action", action: Tensor.make("float32", [2, 7], new Float32Array(14)), obsTimestamps: fresh })
      )
      yield* connection.send(actionFrame([4, 0, 0, 0, 0, 0, 0], fresh))
      yield* Effect.sync(() => output.stdout.length).pipe(
        Effect.repeat({ until: (n) => n >= 1, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      assert.deepStrictEqual(output.stdout.map((line) => (JSON.parse(line) as { action: Array<number> }).action[0]), [4])
      assert.isTrue(output.stderr.some((line) => line.includes("refused a stale action") && line.includes("more than maxActionAge 2 s")))
      assert.isTrue(output.stderr.some((line) => line.includes("refused an invalid action") && line.includes("element 0 is NaN")))
      // NaN, 6 values and 2 rows: one run of three invalid actions (the first said with its reason)
      yield* stderrLine(output, "3 invalid actions from")
      assert.isTrue(output.stderr.some((line) => line.includes("connection opened: ws://127.0.0.1:")))
    }))

  it.live("a token from CHIRAL_TOKEN is required: a client with it in its URI is served", () =>
    Effect.gen(function*() {
      const { address, output } = yield* startServe(serve, [...small, "--fps", "0"]).pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: { CHIRAL_TOKEN: "s3cret" } }))
      )
      assert.include(yield* stderrLine(output, "robot safety"), "token required")
      const refused = yield* raw(address).pipe(Effect.flip)
      assert.include(refused.message, "401")
      const client = yield* connect(`${address}/?token=s3cret`)
      assert.strictEqual((yield* client.getObs).cameras.length, 2)
    }))
})

describe("chiral serve: keepalive across a stall of the server", () => {
  // The server runs in a process of its own (the built dist/, `tsc -b` first), so it can be stopped.
  const bin = fileURLToPath(new URL("../bin/chiral.js", import.meta.url))

  it.live("stopped (SIGSTOP) for longer than --ping-timeout while a pong was on its way, the server keeps that client", () =>
    Effect.gen(function*() {
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(process.execPath, [bin, "serve", ...small, "--fps", "0", "--ping-interval", "0.2", "--ping-timeout", "1.5"], {
            stdio: ["ignore", "ignore", "pipe"]
          })
        ),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const address = yield* Effect.callback<string>((resume) => {
        let text = ""
        child.stderr.on("data", (chunk: Buffer) => {
          text += chunk.toString()
          const found = /listening on (\S+)/.exec(text)
          if (found !== null) resume(Effect.succeed(found[1]!))
        })
      })
      const raw = yield* RawWebSocket.connect(address)
      // a live client whose pongs take 40 ms: the server is waiting for one for 40 ms after every ping
      const pings = raw.answerPings({ delayMillis: 40 })
      const closed = Effect.andThen(RawWebSocket.closedByServer(raw), Effect.die(new Error("the server closed a live client")))
      /** Waits for the `n`-th ping; a close by the server fails the test at once. */
      const ping = (n: number) =>
        Effect.raceFirst(Effect.sync(pings).pipe(Effect.repeat({ until: (k) => k >= n, schedule: Schedule.spaced(1) })), closed)
      // (a timeout of 1.5 s: a busy machine can stall this process, and the pongs with it, for a second)
      for (let round = 0; round < 2; round++) {
        yield* ping(pings() + 1)
        // a ping just arrived: stop the server before the pong does, for twice the timeout
        child.kill("SIGSTOP")
        yield* Effect.sleep(3000)
        child.kill("SIGCONT")
      }
      // still served: more pings come
      yield* ping(pings() + 3)
    }).pipe(Effect.scoped), 60_000)
})

describe("chiral serve --priority: the robot's main thread", () => {
  // In a process of its own (the built dist/): raising the test runner's own thread is not the point.
  const bin = fileURLToPath(new URL("../bin/chiral.js", import.meta.url))
  const linux = process.platform === "linux"

  /** Starts `chiral serve` with `args` until the scope ends: its pid and its stderr lines up to "listening on". */
  const started = (args: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => spawn(process.execPath, [bin, "serve", ...small, "--fps", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] })),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const lines = yield* Effect.callback<ReadonlyArray<string>>((resume) => {
        let text = ""
        child.stderr.on("data", (chunk: Buffer) => {
          text += chunk.toString()
          if (/listening on \S+/.test(text)) resume(Effect.succeed(text.split("\n")))
        })
        child.once("exit", (code) => resume(Effect.die(new Error(`chiral serve exited with ${code} before listening: ${text}`))))
      })
      return { pid: child.pid!, lines }
    })

  const policyOf = (pid: number, tid: string | number) =>
    ThreadPriority.policyOfStat(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "latin1"))!
  const otherThreads = (pid: number) => fs.readdirSync(`/proc/${pid}/task`).filter((tid) => tid !== String(pid))

  it.live.skipIf(!linux)("realtime: the line says what the main thread got, and the kernel agrees; its other threads stay ordinary", () =>
    Effect.gen(function*() {
      const { lines, pid } = yield* started(["--priority", "realtime"])
      const said = lines.filter((line) => line.includes("the robot's main thread"))
      assert.strictEqual(said.length, 1)
      const main = policyOf(pid, pid)
      const nice = /runs at nice (-?\d+)/.exec(said[0]!)
      if (said[0]!.includes("runs real-time (SCHED_FIFO 1)")) {
        assert.deepStrictEqual(main, { policy: ThreadPriority.SCHED_FIFO, rtPriority: 1 })
      } else if (nice !== null) {
        assert.strictEqual(main.policy, 0)
        assert.strictEqual(os.getPriority(pid), Number(nice[1]))
      } else {
        assert.match(said[0]!, /runs at normal priority \(no right to raise it/)
        assert.strictEqual(main.policy, 0)
      }
      // Where this process may and Linux keeps ordinary threads their share, it is real-time.
      if (ThreadPriority.realtimeAvailable() && !ThreadPriority.realtimeUnthrottled()) {
        assert.include(said[0]!, "runs real-time (SCHED_FIFO 1)")
      }
      // V8's and libuv's threads, started before it, stay ordinary
      const others = otherThreads(pid)
      assert.isAbove(others.length, 0)
      for (const tid of others) assert.strictEqual(policyOf(pid, tid).policy, 0, `thread ${tid}`)
    }).pipe(Effect.scoped), 60_000)

  it.live.skipIf(!linux)("without it the thread is left as it was, and nothing is said", () =>
    Effect.gen(function*() {
      const { lines, pid } = yield* started([])
      assert.isFalse(lines.some((line) => line.includes("the robot's main thread")))
      assert.strictEqual(policyOf(pid, pid).policy, 0)
      assert.strictEqual(os.getPriority(pid), os.getPriority(process.pid))
    }).pipe(Effect.scoped), 60_000)
})

describe("SimulatedRobot", () => {
  /** When and from whom the actions below were applied (capture clock, s; rounded to the µs in the line). */
  const applied = { at: 12.6250004, connection: "ws://robot:8765 ← 10.0.0.2:50124" }
  const appliedJson = `"applied_at":12.625,"connection":"ws://robot:8765 ← 10.0.0.2:50124"`

  it("logs one JSON line per action row, float32 values in their shortest form", () => {
    const chunk = Tensor.make("float32", [2, 3], Float32Array.of(0.1, -2.5, 3, 1e-7, 0, 7))
    assert.deepStrictEqual(SimulatedRobot.actionLogLines(chunk, { cam_0: 12.5 }, applied), [
      "{\"action\":[0.1,-2.5,3],\"obs_timestamps\":{\"cam_0\":12.5},\"applied_at\":12.625,\"connection\":\"ws://robot:8765 ← 10.0.0.2:50124\"}",
      "{\"action\":[1e-7,0,7],\"obs_timestamps\":{\"cam_0\":12.5},\"applied_at\":12.625,\"connection\":\"ws://robot:8765 ← 10.0.0.2:50124\"}"
    ])
    const single = Tensor.make("float32", [2], Float32Array.of(1, 2))
    assert.deepStrictEqual(SimulatedRobot.actionLogLines(single, {}, applied), [`{"action":[1,2],"obs_timestamps":{},${appliedJson}}`])
  })

  it("logs non-finite values as \"NaN\", \"Infinity\", \"-Infinity\" and -0 as -0.0, in every dtype; 64-bit integers exact", () => {
    const floats = Tensor.make("float64", [4], Float64Array.of(NaN, -Infinity, -0, 0.1))
    assert.deepStrictEqual(SimulatedRobot.actionLogLines(floats, { cam_0: NaN }, applied), [
      `{"action":["NaN","-Infinity",-0.0,0.1],"obs_timestamps":{"cam_0":"NaN"},${appliedJson}}`
    ])
    const half = Tensor.make("float16", [2], Uint16Array.of(0x7c00, 0x7e00))
    assert.deepStrictEqual(SimulatedRobot.actionLogLines(half, {}, applied), [`{"action":["Infinity","NaN"],"obs_timestamps":{},${appliedJson}}`])
    const ints = Tensor.make("int64", [2], BigInt64Array.of(2n ** 62n + 1n, -1n))
    assert.deepStrictEqual(SimulatedRobot.actionLogLines(ints, {}, applied), [`{"action":[4611686018427387905,-1],"obs_timestamps":{},${appliedJson}}`])
  })

  it.live("onAction sees each action as it reaches the handler, before the arm moves", () =>
    Effect.gen(function*() {
      const seen: Array<ReadonlyArray<number>> = []
      const appliedWhenSeen: Array<number> = []
      const jointsWhenSeen: Array<ReadonlyArray<number>> = []
      const transport = yield* Layer.build(WebSocketTransport.layerServer({ host: "127.0.0.1", port: 0 }))
      const robot: SimulatedRobot.SimulatedRobot = yield* SimulatedRobot.make({
        cameras: 1,
        width: 8,
        height: 6,
        fps: 0,
        onAction: (action) => {
          seen.push(Tensor.toArray(action).map(Number))
          appliedWhenSeen.push(Effect.runSync(robot.actionsApplied))
          jointsWhenSeen.push(Effect.runSync(robot.jointPositions).map((x) => Math.round(x * 100)))
        }
      }).pipe(Effect.provideContext(transport))
      const client = yield* PolicyClient.make({ reconnect: false }).pipe(
        Effect.provide(WebSocketTransport.layerClient(robot.server.address))
      )
      // one at a time (two sent together would be coalesced), waiting on the count, not on time
      const seenAtLeast = (n: number) =>
        Effect.sync(() => seen.length).pipe(Effect.repeat({ until: (k) => k >= n, schedule: Schedule.spaced("10 millis") }))
      yield* client.sendAction([0.01, 0.02, 0, 0, 0, 0, 0])
      yield* seenAtLeast(1)
      yield* client.sendAction([0.03, 0, 0, 0, 0, 0, 0])
      yield* seenAtLeast(2)
      assert.deepStrictEqual(seen.map((a) => a.map((x) => Math.round(x * 100))), [[1, 2, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0]])
      // each call came before the robot applied that action: the rows it had applied, where its arm was
      assert.deepStrictEqual(appliedWhenSeen, [0, 1])
      assert.deepStrictEqual(jointsWhenSeen, [[0, 0, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0]])
    }).pipe(Effect.scoped), 60_000)

  it("frames differ per camera and phase; K follows the size", () => {
    const a = SimulatedRobot.syntheticImage(0, 0, 8, 4)
    assert.notDeepEqual(a, SimulatedRobot.syntheticImage(1, 0, 8, 4))
    assert.notDeepEqual(a, SimulatedRobot.syntheticImage(0, 1, 8, 4))
    assert.deepStrictEqual(a, SimulatedRobot.syntheticImage(0, 0, 8, 4))
    assert.deepStrictEqual(SimulatedRobot.intrinsicsFor(640, 480), [600, 0, 320, 0, 600, 240, 0, 0, 1])
    assert.notDeepEqual(SimulatedRobot.extrinsicsAt(0, 1, 30), SimulatedRobot.extrinsicsAt(0, 2, 30))
  })
})
