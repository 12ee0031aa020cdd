import { execFile, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Episode } from "@chiral/record"
import { Tensor } from "@chiral/protocol"
import * as RawWebSocket from "@chiral/testing/RawWebSocket"
import { assert, describe, it } from "@effect/vitest"
import { protobufFromBinaryDescriptor } from "@mcap/support"
import { PolicyServer, ServerTransport } from "@chiral/core"
import { ConfigProvider, Context, Deferred, Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { probe } from "../src/commands/Probe.js"
import { endpointOf, nobodyAnswersWarning, progressLine, record } from "../src/commands/Record.js"
import { replay, severalConnections } from "../src/commands/Replay.js"
import { view } from "../src/commands/View.js"
import * as SimulatedRobot from "../src/SimulatedRobot.js"
import { serverTransports, uriTokenOf, withToken } from "../src/Transports.js"
import * as FoxgloveViewer from "./support/FoxgloveViewer.js"
import { run, startCommand } from "./support/RunCommand.js"

/** A small simulated robot on a free loopback port, for the test's scope. */
const startRobot = (options: SimulatedRobot.SimulatedRobotOptions = {}) =>
  Effect.flatMap(Layer.build(serverTransports.websocket({ host: "127.0.0.1", port: 0 })), (transport) =>
    SimulatedRobot.make({ cameras: 2, width: 8, height: 6, depth: true, ...options }).pipe(Effect.provideContext(transport)))

const tempFile = (name: string) => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-cli-record-")), name)

interface CameraJson {
  readonly name: string
  readonly timestamp: number
  readonly image: { readonly data: Array<number> }
  readonly depth: { readonly data: Array<number | string> } | null
}
interface ProbeJson {
  readonly metadata: Record<string, unknown>
  readonly reset: { readonly obs: { readonly timestamp: number; readonly cameras: Array<CameraJson> } }
}

/** `chiral probe URI --json --full`, parsed. */
const probeJson = (uri: string, ...args: Array<string>) =>
  Effect.gen(function*() {
    // a generous limit: on a busy machine a Zenoh session on its worker thread takes seconds to start
    const { exit, stdout, stderr } = yield* run(probe, [uri, "--json", "--full", "--timeout", "60", ...args])
    assert.isTrue(Exit.isSuccess(exit), `probe failed: ${String(exit)} ${stderr.join(" | ")}`)
    return JSON.parse(stdout.join("\n")) as ProbeJson
  })

/** The subprotocol Foxglove and Lichtblick ask for. */
const foxglove = { "Sec-WebSocket-Protocol": "foxglove.websocket.v1" }

// Live sockets, worker threads and files: generous, for a loaded 2-core machine.
const liveTimeout = 60_000

describe("chiral record / replay / view", () => {
  it.live("record forwards to the robot and writes what passed; replay serves it to chiral probe as recorded", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const file = tempFile("episode.mcap")
      const proxy = yield* startCommand(
        record,
        ["--upstream", robot.server.address, "--host", "127.0.0.1", "--listen", "0", "-o", file, "--progress-every", "0.05"],
        "listening on "
      )
      // Through the proxy: one session with a reset and get_obs, one with a legacy step (an action).
      const seen = yield* probeJson(proxy.address, "--reset")
      assert.deepStrictEqual(seen.metadata, { cameras: ["cam_0", "cam_1"], action_shape: [1, 7] })
      yield* probeJson(proxy.address, "--step", "--step-action", "0,0,0,0,0,0,0")
      // Taps run once a frame is sent on: wait until the writer has all fourteen
      // (metadata, reset, obs_request and their answers; metadata, reset, step and theirs;
      // the answer to the proxy's own metadata request on each of the two robot connections).
      const written = "14 frames (4 observations, 1 action)"
      yield* Effect.sync(() => proxy.output.stdout.some((l) => l.includes(written))).pipe(
        Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) })
      )
      // Ctrl-C: the command's scope closes and the file is completed.
      yield* Fiber.interrupt(proxy.fiber)
      const summary = proxy.output.stderr.find((l) => l.startsWith(`chiral record: ${file}:`))
      assert.isDefined(summary)
      assert.include(summary!, written)
      assert.notInclude(summary!, "dropped")

      const episode = yield* Episode.open(file)
      assert.deepStrictEqual(episode.metadata, seen.metadata)
      assert.deepStrictEqual(episode.observations.map((o) => o.reply), ["reset_response", "obs_response", "reset_response", "step_response"])
      const recorded = yield* episode.observation(1)
      assert.strictEqual(recorded.timestamp, seen.reset.obs.timestamp)
      for (const [i, camera] of seen.reset.obs.cameras.entries()) {
        assert.strictEqual(recorded.cameras[i]!.name, camera.name)
        assert.strictEqual(recorded.cameras[i]!.timestamp, camera.timestamp)
        assert.deepStrictEqual(Array.from(Tensor.bytes(recorded.cameras[i]!.image)), camera.image.data)
      }
      assert.strictEqual(episode.actions.length, 1)
      assert.deepStrictEqual(episode.actions[0]!.values, [0, 0, 0, 0, 0, 0, 0])
      assert.deepStrictEqual(episode.actions[0]!.shape, [1, 7])
      assert.deepStrictEqual(episode.actions[0]!.obsTimestamps, episode.observations[2]!.cameraTimestamps)

      // Replay: the first session gets the first recorded segment, byte for byte.
      const replaying = yield* startCommand(replay, [file, "--host", "127.0.0.1", "--port", "0"], "listening on ")
      const replayed = yield* probeJson(replaying.address, "--reset")
      assert.deepStrictEqual(replayed.metadata, seen.metadata)
      assert.deepStrictEqual(replayed.reset.obs, seen.reset.obs)
      // The second session's step acts on the second segment's reset: the same
      // observation the recorded action was computed from, so it is compared.
      yield* probeJson(replaying.address, "--step", "--step-action", "0,0,0,0,0,0,0")
      assert.strictEqual(replaying.output.stdout.length, 1)
      assert.deepStrictEqual(JSON.parse(replaying.output.stdout[0]!), {
        seq: 3,
        index: 0,
        max_abs_diff: 0,
        action: [0, 0, 0, 0, 0, 0, 0],
        recorded: [0, 0, 0, 0, 0, 0, 0]
      })
    }).pipe(Effect.scoped), liveTimeout)

  // In a process of its own (the built dist/, `tsc -b` first), so that it can be sent the signal.
  it.live("record: its terminal gone (what it prints fails, then SIGHUP), it records on and completes the file as Ctrl-C does; replay serves a copy cut short, saying so", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const file = tempFile("hangup.mcap")
      const bin = fileURLToPath(new URL("../bin/chiral.js", import.meta.url))
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(process.execPath, [
            bin,
            "record",
            "--upstream",
            robot.server.address,
            "--host",
            "127.0.0.1",
            "--listen",
            "0",
            "-o",
            file,
            "--progress-every",
            "0.05"
          ], { stdio: ["ignore", "pipe", "pipe"] })
        ),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const exited = yield* Deferred.make<{ readonly code: number | null; readonly signal: string | null }>()
      child.on("exit", (code, signal) => Deferred.doneUnsafe(exited, Exit.succeed({ code, signal })))
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      const address = yield* Effect.sync(() => /listening on (\S+)/.exec(stderr)?.[1]).pipe(
        Effect.repeat({ until: (found) => found !== undefined, schedule: Schedule.spaced(10) }),
        Effect.raceFirst(Effect.flatMap(Deferred.await(exited), (exit) =>
          Effect.die(new Error(`record ended before listening: ${JSON.stringify(exit)}; stderr: ${stderr}`))))
      )
      yield* probeJson(address!, "--reset")
      yield* Effect.sync(() => stdout.includes("(2 observations")).pipe(
        Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) })
      )
      // The terminal is gone: what it prints fails (EPIPE here, EIO on a terminal).
      // It records on, then SIGHUP.
      child.stdout.destroy()
      child.stderr.destroy()
      yield* probeJson(address!)
      child.kill("SIGHUP")
      const exit = yield* Deferred.await(exited)
      assert.deepStrictEqual(exit, { code: 130, signal: null })

      const episode = yield* Episode.open(file)
      assert.isUndefined(episode.incomplete)
      assert.deepStrictEqual(episode.observations.map((o) => o.reply), ["reset_response", "obs_response", "obs_response"])
      assert.isDefined(episode.records.find((r) => r.name === "chiral.recording"))

      // The same file cut short (in its summary): served, with one line saying so.
      const whole = fs.readFileSync(file)
      const cut = tempFile("cut.mcap")
      fs.writeFileSync(cut, whole.subarray(0, whole.byteLength - 40))
      const replaying = yield* startCommand(replay, [cut, "--host", "127.0.0.1", "--port", "0"], "listening on ")
      const warning = replaying.output.stderr.filter((l) => l.includes("warning") && l.includes("not completed"))
      assert.strictEqual(warning.length, 1, replaying.output.stderr.join(" | "))
      assert.match(
        warning[0]!,
        new RegExp(`^chiral replay: warning: ${cut}: the file was not completed \\(the recorder stopped without closing it\\): \\d+ messages read, up to byte \\d+ of ${whole.byteLength - 40}$`)
      )
      assert.include(replaying.output.stderr.find((l) => l.includes("listening on "))!, "3 observations")
      const replayed = yield* probeJson(replaying.address, "--reset")
      assert.strictEqual(replayed.reset.obs.timestamp, episode.observations[0]!.timestamp)
    }).pipe(Effect.scoped), liveTimeout)

  it.live("record: a robot's token is needed through the proxy too, and never printed; --token sets another", () =>
    Effect.gen(function*() {
      const robot = yield* Effect.flatMap(
        Layer.build(serverTransports.websocket({ host: "127.0.0.1", port: 0, webSocket: { token: "s3cret" } })),
        (transport) => SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      )
      const upstream = `${robot.server.address}/?token=s3cret`
      const file = tempFile("token.mcap")
      const proxy = yield* startCommand(record, ["--upstream", upstream, "--host", "127.0.0.1", "--listen", "0", "-o", file], "listening on ")
      const listening = proxy.output.stderr.find((l) => l.includes("listening on "))!
      assert.include(listening, `token required, forwarding to ${robot.server.address}/?token=***`)
      const refused = yield* run(probe, [proxy.address, "--timeout", "5"])
      assert.isTrue(Exit.isFailure(refused.exit))
      assert.include(refused.stderr.join("\n"), "401")
      yield* probeJson(`${proxy.address}/?token=s3cret`)
      yield* Fiber.interrupt(proxy.fiber)
      for (const line of [...proxy.output.stdout, ...proxy.output.stderr]) assert.notInclude(line, "s3cret")

      // --view-port: watching what passes takes the same token
      const viewed = yield* startCommand(
        record,
        ["--upstream", upstream, "--host", "127.0.0.1", "--listen", "0", "-o", file, "--view-port", "0"],
        "listening on "
      )
      const viewAddress = yield* addressOnLine(viewed.output, "live view on ")
      assert.include(viewed.output.stderr.find((l) => l.includes("live view on "))!, `(token required: ${viewAddress}/?token=***)`)
      const viewStatus = (path: string) => RawWebSocket.upgradeStatus(viewAddress, { path, headers: foxglove })
      assert.strictEqual(yield* viewStatus("/"), 401)
      assert.strictEqual(yield* viewStatus("/?token=wrong"), 401)
      assert.strictEqual(yield* viewStatus("/?token=s3cret"), 101)
      yield* Fiber.interrupt(viewed.fiber)

      // --token, and CHIRAL_TOKEN, choose the proxy's own
      for (const [args, env] of [[["--token", "other"], {}], [[], { CHIRAL_TOKEN: "other" }]] as const) {
        const own = yield* startCommand(
          record,
          ["--upstream", upstream, "--host", "127.0.0.1", "--listen", "0", "-o", file, ...args],
          "listening on "
        ).pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })))
        assert.isTrue(Exit.isFailure((yield* run(probe, [`${own.address}/?token=s3cret`, "--timeout", "5"])).exit))
        yield* probeJson(`${own.address}/?token=other`)
        yield* Fiber.interrupt(own.fiber)
      }

      // one token for both: given for the proxy, it is presented to a robot whose URI has none
      const both = yield* startCommand(
        record,
        ["--upstream", robot.server.address, "--host", "127.0.0.1", "--listen", "0", "-o", file, "--token", "s3cret"],
        "listening on "
      )
      assert.include(both.output.stderr.find((l) => l.includes("listening on "))!, `forwarding to ${robot.server.address}`)
      yield* probeJson(`${both.address}/?token=s3cret`)
      yield* Fiber.interrupt(both.fiber)

      // Zenoh has no token: a proxy open to the network says what that means
      const zenoh = yield* startCommand(
        record,
        ["--upstream", upstream, "--protocol", "zenoh", "--host", "0.0.0.0", "--listen", "0", "-o", file],
        "listening on "
      )
      yield* Fiber.interrupt(zenoh.fiber)
      assert.isTrue(
        zenoh.output.stderr.some((l) =>
          l.startsWith("chiral record: warning: the robot requires a token, and Zenoh has none: whoever reaches tcp/0.0.0.0:")
        ),
        zenoh.output.stderr.join(" | ")
      )
    }).pipe(Effect.scoped), liveTimeout)

  it.live("record passes on why the robot closed a client's connection (its reset failed: 1011 and why); with no robot, the client is told 1013", () =>
    Effect.gen(function*() {
      const robot = yield* Effect.flatMap(Layer.build(serverTransports.websocket({ host: "127.0.0.1", port: 0 })), (transport) =>
        PolicyServer.make({
          cameras: [{ name: "cam_0", width: 4, height: 2 }],
          handlers: { reset: Effect.fail(new Error("e-stop pressed")), applyAction: () => Effect.void }
        }).pipe(Effect.provideContext(transport)))
      const file = tempFile("closed.mcap")
      const proxy = yield* startCommand(record, ["--upstream", robot.address, "--host", "127.0.0.1", "--listen", "0", "-o", file], "listening on ")
      const reset = yield* run(probe, [proxy.address, "--reset", "--timeout", "30"])
      assert.isTrue(Exit.isFailure(reset.exit))
      assert.include(
        reset.stderr.join("\n"),
        `chiral probe: ${proxy.address}: reset: Disconnected (closed by the server: 1011 chiral: reset failed: e-stop pressed)`
      )
      yield* Fiber.interrupt(proxy.fiber)

      // the robot gone: its port is free again once the scope that held it is closed
      const gone = yield* Effect.scoped(Effect.map(Layer.build(serverTransports.websocket({ host: "127.0.0.1", port: 0 })), (context) =>
        Context.get(context, ServerTransport).address))
      const lonely = yield* startCommand(record, ["--upstream", gone, "--host", "127.0.0.1", "--listen", "0", "-o", file], "listening on ")
      const refused = yield* run(probe, [lonely.address, "--timeout", "30"])
      assert.isTrue(Exit.isFailure(refused.exit))
      assert.include(
        refused.stderr.join("\n"),
        `chiral probe: ${lonely.address}: metadata: Disconnected (closed by the server: 1013 chiral record: no robot answers)`
      )
      yield* Fiber.interrupt(lonely.fiber)
    }).pipe(Effect.scoped), liveTimeout)

  it.live("replay: --token or CHIRAL_TOKEN is required of clients; on Zenoh a token is refused", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ cameras: 1 })
      const file = tempFile("replayed.mcap")
      const proxy = yield* startCommand(record, ["--upstream", robot.server.address, "--host", "127.0.0.1", "--listen", "0", "-o", file], "listening on ")
      yield* probeJson(proxy.address)
      yield* Fiber.interrupt(proxy.fiber)
      for (const [args, env] of [[["--token", "s3cret"], {}], [[], { CHIRAL_TOKEN: "s3cret" }]] as const) {
        const replaying = yield* startCommand(replay, [file, "--host", "127.0.0.1", "--port", "0", ...args], "listening on ").pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
        )
        assert.include(replaying.output.stderr.find((l) => l.includes("listening on "))!, ", token required)")
        const refused = yield* run(probe, [replaying.address, "--timeout", "5"])
        assert.include(refused.stderr.join("\n"), "401")
        yield* probeJson(`${replaying.address}/?token=s3cret`)
        yield* Fiber.interrupt(replaying.fiber)
        for (const line of replaying.output.stderr) assert.notInclude(line, "s3cret")
      }
      const zenoh = yield* run(replay, [file, "--protocol", "zenoh", "--token", "s3cret"])
      assert.deepStrictEqual(zenoh.stderr, ["chiral replay: --token applies to --protocol websocket only: Zenoh's protocol has no access token"])
    }).pipe(Effect.scoped), liveTimeout)

  it.live("record on Zenoh at both ends: clients reach the robot through it, the episode holds what passed", () =>
    Effect.gen(function*() {
      const robot = yield* Effect.flatMap(
        Layer.build(serverTransports.zenoh({ host: "127.0.0.1", port: 0 })),
        (transport) => SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      )
      const file = tempFile("zenoh.mcap")
      const proxy = yield* startCommand(
        record,
        ["--upstream", robot.server.address, "--protocol", "zenoh", "--host", "127.0.0.1", "--listen", "0", "-o", file, "--progress-every", "0.05"],
        "listening on "
      )
      assert.match(proxy.address, /^tcp\/127\.0\.0\.1:\d+$/)
      const seen = yield* probeJson(proxy.address, "--reset")
      // The reset and the observation (Zenoh clients also probe with metadata requests until answered).
      yield* Effect.sync(() => proxy.output.stdout.some((l) => /\((\d+) observations/.exec(l)?.[1] === "2")).pipe(
        Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) })
      )
      yield* Fiber.interrupt(proxy.fiber)
      const episode = yield* Episode.open(file)
      assert.deepStrictEqual(episode.observations.map((o) => o.reply), ["reset_response", "obs_response"])
      const recorded = yield* episode.observation(1)
      assert.deepStrictEqual(Array.from(Tensor.bytes(recorded.cameras[0]!.image)), seen.reset.obs.cameras[0]!.image.data)
    }).pipe(Effect.scoped), liveTimeout)

  it.live("view: a Foxglove client sees the channels advertised and an image after subscribing", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const viewing = yield* startCommand(view, [robot.server.address, "--host", "127.0.0.1", "--port", "0", "--hz", "20"], "live view on ")
      const viewer = yield* FoxgloveViewer.connect(viewing.address)
      yield* viewer.until(() => viewer.channels.has("/cam_0/image"))
      for (const topic of ["/cam_0/depth", "/cam_0/calibration", "/cam_1/image", "/tf", "/proprio/joint_pos", "/observation"]) {
        assert.isTrue(viewer.channels.has(topic), topic)
      }
      const channel = viewer.channels.get("/cam_0/image")!
      assert.strictEqual(channel.schemaName, "foxglove.RawImage")
      assert.strictEqual(channel.encoding, "protobuf")
      viewer.subscribe("/cam_0/image")
      yield* viewer.until(() => viewer.messages.some((m) => m.topic === "/cam_0/image"))
      const type = protobufFromBinaryDescriptor(Buffer.from(channel.schema, "base64")).lookupType("foxglove.RawImage")
      const image = type.toObject(type.decode(viewer.messages.find((m) => m.topic === "/cam_0/image")!.data)) as Record<string, unknown>
      assert.strictEqual(image["encoding"], "rgb8")
      assert.strictEqual(image["width"], 8)
      assert.strictEqual(image["height"], 6)
      assert.strictEqual(image["frame_id"], "cam_0")
      assert.strictEqual((image["data"] as Uint8Array).byteLength, 8 * 6 * 3)
    }).pipe(Effect.scoped), liveTimeout)

  it.live("view: listens on this machine only unless --host says otherwise; elsewhere without a token it warns", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot({ cameras: 1 })
      const local = yield* startCommand(view, [robot.server.address, "--port", "0"], "live view on ")
      assert.match(local.address, /^ws:\/\/127\.0\.0\.1:\d+$/)
      const open = yield* startCommand(view, [robot.server.address, "--host", "0.0.0.0", "--port", "0"], "live view on ")
      assert.match(open.address, /^ws:\/\/0\.0\.0\.0:\d+$/)
      const warning = `chiral: serving the live view ${open.address} without a token: anyone who can reach this port can watch the robot's cameras`
      // Logged while the view starts, before the line that gives its address.
      assert.isTrue(open.output.stderr.some((l) => l.includes(warning)), open.output.stderr.join(" | "))
      assert.isFalse(local.output.stderr.some((l) => l.includes("without a token")), local.output.stderr.join(" | "))
    }).pipe(Effect.scoped), liveTimeout)

  it("view: a token given for the view goes to a ws:// robot whose URI has none, and only there", () => {
    assert.strictEqual(withToken("ws://robot:8765", "s3cret"), "ws://robot:8765/?token=s3cret")
    assert.strictEqual(withToken("ws://robot:8765/chiral?x=1", "a b&c"), "ws://robot:8765/chiral?x=1&token=a+b%26c")
    assert.strictEqual(withToken("ws://robot:8765/?token=r0b0t", "s3cret"), "ws://robot:8765/?token=r0b0t")
    assert.strictEqual(withToken("tcp/robot:7447", "s3cret"), "tcp/robot:7447")
    assert.strictEqual(withToken("ws://robot:8765", undefined), "ws://robot:8765")
    assert.strictEqual(uriTokenOf(withToken("ws://robot:8765", "a b&c")), "a b&c")
  })

  it.live("view: a token is required of viewers (401 without it or with a wrong one), presented to a robot whose URI has none, never printed", () =>
    Effect.gen(function*() {
      const robot = yield* Effect.flatMap(
        Layer.build(serverTransports.websocket({ host: "127.0.0.1", port: 0, webSocket: { token: "s3cret" } })),
        (transport) => SimulatedRobot.make({ cameras: 1, width: 8, height: 6 }).pipe(Effect.provideContext(transport))
      )
      const bare = robot.server.address
      // --token, CHIRAL_TOKEN, and by default the robot URI's own token
      const cases = [
        [[bare, "--token", "s3cret"], {}],
        [[bare], { CHIRAL_TOKEN: "s3cret" }],
        [[`${bare}/?token=s3cret`], {}]
      ] as const
      for (const [args, env] of cases) {
        const viewing = yield* startCommand(view, [...args, "--port", "0", "--hz", "20"], "live view on ").pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
        )
        assert.include(viewing.output.stderr.find((l) => l.includes("live view on "))!, `token required: ${viewing.address}/?token=***`)
        // What Foxglove and Lichtblick send: the subprotocol, the token in the URI they are given.
        const status = (options: RawWebSocket.HandshakeOptions = {}) =>
          RawWebSocket.upgradeStatus(viewing.address, { ...options, headers: { ...foxglove, ...options.headers } })
        assert.strictEqual(yield* status(), 401)
        assert.strictEqual(yield* status({ path: "/?token=wrong" }), 401)
        assert.strictEqual(yield* status({ headers: { Authorization: "Bearer wrong" } }), 401)
        assert.strictEqual(yield* status({ headers: { Authorization: "Bearer s3cret" } }), 101)
        // The robot answers the view (it refuses clients without its token, and the view then ends):
        // observations reach the viewer.
        const viewer = yield* FoxgloveViewer.connect(`${viewing.address}/?token=s3cret`)
        yield* viewer.until(() => viewer.channels.has("/observation")).pipe(
          Effect.raceFirst(Effect.flatMap(Fiber.await(viewing.fiber), (exit) =>
            Effect.die(new Error(`view ended: ${String(exit)}; stderr: ${viewing.output.stderr.join(" | ")}`))))
        )
        viewer.subscribe("/observation")
        yield* viewer.until(() => viewer.messages.some((m) => m.topic === "/observation"))
        const observation = JSON.parse(new TextDecoder().decode(viewer.messages.find((m) => m.topic === "/observation")!.data))
        assert.strictEqual(observation.connection, `${bare}/?token=***`)
        yield* Fiber.interrupt(viewing.fiber)
        assert.include(viewing.output.stderr.join("\n"), `showing ${bare}/?token=*** at 20 Hz`)
        for (const line of [...viewing.output.stdout, ...viewing.output.stderr]) assert.notInclude(line, "s3cret")
      }
    }).pipe(Effect.scoped), liveTimeout)

  it.live("record --view-port: the live view shows the actions that pass", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const proxy = yield* startCommand(
        record,
        ["--upstream", robot.server.address, "--host", "127.0.0.1", "--listen", "0", "-o", tempFile("viewed.mcap"), "--view-port", "0"],
        "listening on "
      )
      // Printed before the listening line.
      const viewAddress = yield* addressOnLine(proxy.output, "live view on ")
      const viewer = yield* FoxgloveViewer.connect(viewAddress)
      yield* viewer.until(() => viewer.channels.has("/action"))
      viewer.subscribe("/action")
      // The subscription reaches the server asynchronously: step until an action is seen (bounded).
      for (let attempt = 0; attempt < 50 && !viewer.messages.some((m) => m.topic === "/action"); attempt++) {
        yield* probeJson(proxy.address, "--step", "--step-action", "0,0,0,0,0,0,0")
      }
      const action = JSON.parse(new TextDecoder().decode(viewer.messages.find((m) => m.topic === "/action")!.data))
      assert.strictEqual(action.type, "action")
      assert.deepStrictEqual(action.shape, [1, 7])
      assert.deepStrictEqual(action.values, [0, 0, 0, 0, 0, 0, 0])
    }).pipe(Effect.scoped), liveTimeout)

  // The reference Python client (TRI-ML/chiral) driving a robot through the
  // proxy. Skipped unless `import chiral` works for the interpreter named by
  // CHIRAL_REFERENCE_PYTHON (default python3), e.g. with Debian's
  // python3-websockets, -msgpack and -numpy and the reference on PYTHONPATH
  // (its `import zenoh` needs a placeholder module for WebSocket use).
  const python = process.env.CHIRAL_REFERENCE_PYTHON ?? "python3"
  const hasPythonReference = (() => {
    try {
      execFileSync(python, ["-c", "import chiral"], { stdio: "ignore" })
      return true
    } catch {
      return false
    }
  })()
  it.live.skipIf(!hasPythonReference)("the reference Python client drives a robot through the proxy", () =>
    Effect.gen(function*() {
      const robot = yield* startRobot()
      const file = tempFile("python.mcap")
      const proxy = yield* startCommand(
        record,
        ["--upstream", robot.server.address, "--host", "127.0.0.1", "--listen", "0", "-o", file],
        "listening on "
      )
      // The reference's own API: three actions queued and dispatched at 50 Hz;
      // once its queue is empty, one more round trip on the same socket
      // follows the last action through the proxy.
      const script = [
        "import sys, time, numpy as np, chiral",
        "with chiral.PolicyClient(sys.argv[1]) as env:",
        "    env.get_metadata(); env.reset(); env.get_obs()",
        "    for i in range(3): env.put_action(np.full(7, i + 1, dtype=np.float32))",
        "    env.start_action_dispatch(50)",
        "    while len(env._action_queue) > 0: time.sleep(0.01)",
        "    time.sleep(0.05); env.get_obs()"
      ].join("\n")
      // Asynchronously: the proxy runs in this process and must keep serving.
      const outcome = yield* Effect.callback<{ readonly error: Error | null; readonly stderr: string }>((resume) => {
        const child = execFile(python, ["-c", script, proxy.address], { timeout: 50_000, killSignal: "SIGKILL" }, (
          error,
          _stdout,
          stderr
        ) => resume(Effect.succeed({ error, stderr })))
        return Effect.sync(() => child.kill("SIGKILL"))
      })
      assert.isNull(outcome.error, outcome.stderr)
      yield* Fiber.interrupt(proxy.fiber)
      const episode = yield* Episode.open(file)
      assert.isAtLeast(episode.observations.length, 3)
      assert.deepStrictEqual(episode.actions.map((a) => a.values), [
        [1, 1, 1, 1, 1, 1, 1],
        [2, 2, 2, 2, 2, 2, 2],
        [3, 3, 3, 3, 3, 3, 3]
      ])
    }).pipe(Effect.scoped), liveTimeout)
})

/** The address on an already printed stderr line containing `marker`. */
const addressOnLine = (output: { readonly stderr: Array<string> }, marker: string) =>
  Effect.sync(() => {
    const line = output.stderr.find((l) => l.includes(marker))
    if (line === undefined) throw new Error(`no "${marker}" line: ${output.stderr.join(" | ")}`)
    return /(ws:\/\/[^\s,)]+)/.exec(line.slice(line.indexOf(marker)))![1]!
  })

describe("chiral record's progress line", () => {
  it("sizes read in units that still say something for a small recording", () => {
    const stats = (recordedBytes: number, fileBytes: number, dropped = 0) => ({
      offered: 12,
      dropped,
      droppedBytes: dropped * 1_500_000,
      pendingBytes: 0,
      recordedBytes,
      failure: undefined,
      written: {
        counts: { frames: 12, observations: 6, actions: 6, undecodable: 0, skippedImages: [] },
        fileBytes,
        messages: 30
      }
    })
    assert.strictEqual(
      progressLine(stats(40_800, 13_600), 4),
      "12 frames (6 observations, 6 actions), 40.8 kB recorded (10.2 kB/s), 13.6 kB in the file, 4 s"
    )
    assert.strictEqual(
      progressLine(stats(172_000_000, 51_000_000, 2), 10),
      "12 frames (6 observations, 6 actions), 172.0 MB recorded (17.2 MB/s), 51.0 MB in the file, 10 s, 2 frames dropped (3.0 MB: the disk is behind)"
    )
    assert.include(progressLine(stats(512, 300), 1), "512 bytes recorded (512 bytes/s)")
    // a rate below 1 kB/s is a whole number of bytes, not 44.723519826062045
    assert.include(progressLine(stats(534, 300), 11.94), "534 bytes recorded (45 bytes/s)")
    assert.include(progressLine(stats(534, 300), 0.5341), "534 bytes recorded (1.0 kB/s)")
  })
})

describe("replay: a recording of several client connections", () => {
  const entry = (seq: number, connection: string): Episode.ObservationEntry => ({
    seq,
    logTime: BigInt(seq),
    reply: "obs_response",
    connection,
    timestamp: seq,
    cameraTimestamps: {},
    info: undefined,
    reward: undefined,
    terminated: undefined,
    truncated: undefined
  })

  it("is said, with each connection's count; one connection is not", () => {
    assert.isUndefined(severalConnections([entry(0, "a"), entry(1, "a")]))
    assert.strictEqual(
      severalConnections([entry(0, "ws://p ← 1"), entry(1, "ws://p ← 2"), entry(2, "ws://p ← 2")]),
      "its observations come from 2 client connections (1 from ws://p ← 1, 2 from ws://p ← 2), played as one timeline: a client that reconnected (its robot restarted) or another client through the proxy (a watcher: watch with chiral record --view-port instead)"
    )
  })
})

describe("record: a robot that is not up at start", () => {
  it("the robot's TCP endpoint is read from either transport's URI", () => {
    assert.deepStrictEqual(endpointOf("ws://robot:8765/?token=t"), { host: "robot", port: 8765 })
    assert.deepStrictEqual(endpointOf("wss://robot/"), { host: "robot", port: 443 })
    assert.deepStrictEqual(endpointOf("ws://[::1]:9000"), { host: "::1", port: 9000 })
    assert.deepStrictEqual(endpointOf("tcp/10.0.0.2:7447"), { host: "10.0.0.2", port: 7447 })
    assert.deepStrictEqual(endpointOf("tcp/[fe80::1]:7447"), { host: "fe80::1", port: 7447 })
    assert.isUndefined(endpointOf("http://robot:80"))
  })

  it("a host the resolver does not know is said as such: its clients are turned away at once, not held", () => {
    assert.strictEqual(
      nobodyAnswersWarning("ws://robt:8765", "robt", { code: "ENOTFOUND", problem: "ENOTFOUND" }),
      `chiral record: warning: no host "robt" is known to the resolver (ENOTFOUND): each client is turned away at once until it is; check --upstream`
    )
    // a temporary failure of the resolver is retried like a robot that is not up
    assert.include(
      nobodyAnswersWarning("ws://robot:8765", "robot", { code: "EAI_AGAIN", problem: "EAI_AGAIN" }),
      "nothing answers at ws://robot:8765 yet (EAI_AGAIN): each client is held up to 2 s"
    )
  })

  it.live("is said at once, not only when a client connects", () =>
    Effect.gen(function*() {
      // A port nobody listens on: taken, then given back.
      const port = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const server = net.createServer().listen(0, "127.0.0.1", () => {
            const taken = (server.address() as net.AddressInfo).port
            server.close(() => resolve(taken))
          })
        })
      )
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chiral-cli-record-")), "down.mcap")
      const proxy = yield* startCommand(
        record,
        ["--upstream", `ws://127.0.0.1:${port}`, "--host", "127.0.0.1", "--listen", "0", "-o", file],
        "listening on "
      )
      const warning = `chiral record: warning: nothing answers at ws://127.0.0.1:${port} yet (ECONNREFUSED): each client is held up to 2 s and then turned away, until the robot is up`
      yield* Effect.sync(() => proxy.output.stderr.some((l) => l.includes(warning))).pipe(
        Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) })
      )
      yield* Fiber.interrupt(proxy.fiber)
    }).pipe(Effect.scoped), 60_000)
})
