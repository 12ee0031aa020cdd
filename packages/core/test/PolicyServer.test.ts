import { Tensor } from "@chiral/protocol"
import { assert, describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Layer, Schema } from "effect"
import { TestClock } from "effect/testing"
import {
  ClientTransport,
  MemoryTransport,
  PolicyClient,
  PolicyServer,
  type RequestError,
  SensorError,
  ServerTransport
} from "../src/index.js"
import { failure } from "@chiral/testing/Exits"
import * as Pair from "@chiral/testing/Pair"
import * as Robot from "@chiral/testing/Robot"

const serverLayer = Layer.unwrap(Effect.map(Robot.makeRecorder, (recorder) =>
  PolicyServer.PolicyServer.layer({ cameras: Robot.cameras, proprios: Robot.proprios, handlers: Robot.handlers(recorder) })
)).pipe(Layer.provide(MemoryTransport.layer()))

describe("PolicyServer sensor state", () => {
  it.effect("update* check shape and dtype with a typed error naming the sensor", () =>
    Effect.gen(function*() {
      const server = yield* PolicyServer.PolicyServer
      const cases = [
        [server.updateImage("wrist", new Uint8Array(10)), "wrist", "image", "expected 72 elements"],
        [server.updateImage("wrist", new Float32Array(72)), "wrist", "image", "expected a Uint8Array for dtype uint8"],
        [
          server.updateImage("wrist", { dtype: "uint8", shape: [6, 4, 3], data: new Uint8Array(72) }),
          "wrist",
          "image",
          "expected shape [4, 6, 3]"
        ],
        [server.updateDepth("wrist", new Uint16Array(24)), "wrist", "depth", "expected a Float32Array"],
        [server.updateDepth("scene", new Float32Array(6)), "scene", "depth", "without depth"],
        [server.updateIntrinsics("wrist", [1, 2, 3]), "wrist", "intrinsics", "expected 3×3 = 9 values"],
        [server.updateExtrinsics("wrist", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]), "wrist", "extrinsics", "row 0"],
        [server.updateImage("nope", new Uint8Array(72)), "nope", "image", "no camera named"],
        [server.updateProprio("joint_pos", [1, 2, 3]), "joint_pos", "proprio", "expected 7 elements"],
        [server.updateProprio("joint_vel", [1]), "joint_vel", "proprio", "no proprio named"]
      ] as const
      for (const [effect, sensor, field, reason] of cases) {
        const error = failure(yield* Effect.exit(effect))
        expect(error).toBeInstanceOf(SensorError)
        expect(error.sensor).toBe(sensor)
        expect(error.field).toBe(field)
        expect(error.reason).toContain(reason)
      }
      // nothing was changed by the rejected writes
      const obs = yield* server.makeObs()
      expect(Tensor.toArray(obs.cameras[0]!.image).every((v) => v === 0)).toBe(true)
      expect(obs.cameras[0]!.timestamp).toBe(0)
    }).pipe(Effect.provide(serverLayer)))

  it.effect("updateImage stamps the monotonic capture time; makeObs snapshots every sensor", () =>
    Effect.gen(function*() {
      const server = yield* PolicyServer.PolicyServer
      yield* TestClock.adjust(1500)
      const image = new Uint8Array(72).map((_, i) => i)
      yield* server.updateImage("wrist", image)
      image[0] = 255 // the state kept its own copy
      yield* server.updateDepth("wrist", new Float32Array(24).fill(1.25))
      yield* server.updateExtrinsics("wrist", [1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
      yield* TestClock.adjust(250)
      yield* server.updateImage("scene", { dtype: "uint8", shape: [2, 3, 3], data: new Uint8Array(18).fill(7) })
      yield* server.updateProprio("joint_pos", [1, 2, 3, 4, 5, 6, 7])
      const obs = yield* server.makeObs({ extra: { step: 3 } })
      expect(obs.timestamp).toBe(1.75)
      expect(obs.extra).toEqual({ step: 3 })
      const [wrist, scene] = obs.cameras
      expect(wrist!.name).toBe("wrist")
      expect(wrist!.timestamp).toBe(1.5)
      expect(Array.from(wrist!.image.data.slice(0, 3) as ArrayLike<number>)).toEqual([0, 1, 2])
      expect(wrist!.image.shape).toEqual([4, 6, 3])
      expect(wrist!.depth!.shape).toEqual([4, 6])
      expect(wrist!.depth!.data[5]).toBe(1.25)
      expect(wrist!.extrinsics[3]).toBe(0.5)
      expect(Array.from(wrist!.intrinsics)).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1])
      expect(scene!.timestamp).toBe(1.75)
      expect(scene!.depth).toBeNull()
      expect(Array.from(scene!.intrinsics)).toEqual([600, 0, 1.5, 0, 600, 1, 0, 0, 1])
      expect(obs.proprios[0]!.name).toBe("joint_pos")
      expect(obs.proprios[0]!.data.dtype).toBe("float32")
      expect(Tensor.toArray(obs.proprios[0]!.data)).toEqual([1, 2, 3, 4, 5, 6, 7])
    }).pipe(Effect.provide(serverLayer)))

  it.effect("a snapshot is not affected by later writes", () =>
    Effect.gen(function*() {
      const server = yield* PolicyServer.PolicyServer
      yield* server.updateImage("scene", new Uint8Array(18).fill(1))
      const before = yield* server.makeObs()
      yield* server.updateImage("scene", new Uint8Array(18).fill(2))
      yield* server.updateIntrinsics("scene", [2, 0, 0, 0, 2, 0, 0, 0, 1])
      expect(before.cameras[1]!.image.data[0]).toBe(1)
      expect(before.cameras[1]!.intrinsics[0]).toBe(600)
      const after = yield* server.makeObs()
      expect(after.cameras[1]!.image.data[0]).toBe(2)
      expect(after.cameras[1]!.intrinsics[0]).toBe(2)
    }).pipe(Effect.provide(serverLayer)))

  it.effect("bad configs are rejected with a ConfigError", () =>
    Effect.gen(function*() {
      const build = (config: PolicyServer.PolicyServerConfig) =>
        PolicyServer.make(config).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer()), Effect.exit)
      const handlers = { reset: Effect.die("unused"), applyAction: () => Effect.void }
      const duplicate = failure(yield* build({ cameras: [{ name: "a", height: 1, width: 1 }, { name: "a", height: 2, width: 2 }], handlers }))
      expect(duplicate._tag).toBe("ConfigError")
      expect(duplicate.message).toContain("two cameras")
      const size = failure(yield* build({ cameras: [{ name: "a", height: 0, width: 1 }], handlers }))
      expect(size.message).toContain("height must be a positive integer")
      const k = failure(yield* build({ cameras: [{ name: "a", height: 1, width: 1, intrinsics: [1, 2] }], handlers }))
      expect(k.message).toContain("intrinsics")
    }))
})

describe("PolicyServer without a getObs handler", () => {
  for (const [name, transports] of Pair.transports) {
    it.live(`answers get_obs from the sensors as they are at the request, over ${name}`, () =>
      Effect.gen(function*() {
        const server = yield* PolicyServer.make({
          cameras: Robot.cameras,
          proprios: Robot.proprios,
          handlers: { reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void }
        })
        const client = yield* PolicyClient.make({ quiet: true })
        const pose = (x: number) => [1, 0, 0, x, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
        for (const x of [0.25, -1.5]) {
          yield* server.updateImage("wrist", new Uint8Array(72).fill(x > 0 ? 3 : 4))
          yield* server.updateExtrinsics("wrist", pose(x))
          yield* server.updateProprio("joint_pos", [x, 0, 0, 0, 0, 0, 0])
          const before = yield* Clock.monotonicTimeNanos
          const obs = yield* client.getObs
          const after = yield* Clock.monotonicTimeNanos
          const wrist = obs.cameras[0]!
          expect(Array.from(wrist.extrinsics)).toEqual(pose(x))
          expect(Array.from(wrist.image.data as Uint8Array).every((v) => v === (x > 0 ? 3 : 4))).toBe(true)
          expect(Tensor.toArray(obs.proprios[0]!.data)[0]).toBe(x)
          expect(Array.from(obs.cameras[1]!.intrinsics)).toEqual([600, 0, 1.5, 0, 600, 1, 0, 0, 1])
          expect(obs.extra).toEqual({})
          // Stamped when the server answered, on the capture clock.
          expect(obs.timestamp).toBeGreaterThanOrEqual(Number(before) / 1e9)
          expect(obs.timestamp).toBeLessThanOrEqual(Number(after) / 1e9)
        }
      }).pipe(Effect.scoped, Effect.provide(transports)))
  }
})

describe("PolicyServer.updateCamera", () => {
  it.effect("writes a camera's image, depth and pose in one step, stamped once", () =>
    Effect.gen(function*() {
      const server = yield* PolicyServer.PolicyServer
      yield* TestClock.adjust(2000)
      const pose = [1, 0, 0, 0.25, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
      yield* server.updateCamera("wrist", {
        image: new Uint8Array(72).fill(9),
        depth: new Float32Array(24).fill(0.75),
        extrinsics: pose
      })
      const obs = yield* server.makeObs()
      const wrist = obs.cameras[0]!
      expect(wrist.timestamp).toBe(2)
      expect(Tensor.toArray(wrist.image).every((v) => v === 9)).toBe(true)
      expect(Tensor.toArray(wrist.depth!).every((v) => v === 0.75)).toBe(true)
      expect(Array.from(wrist.extrinsics)).toEqual(pose)
      // Only K: the rest stays, and no new capture time without an image.
      yield* TestClock.adjust(500)
      yield* server.updateCamera("wrist", { intrinsics: [2, 0, 1, 0, 2, 1, 0, 0, 1] })
      const after = (yield* server.makeObs()).cameras[0]!
      expect(Array.from(after.intrinsics)).toEqual([2, 0, 1, 0, 2, 1, 0, 0, 1])
      expect(after.timestamp).toBe(2)
      expect(Array.from(after.extrinsics)).toEqual(pose)
    }).pipe(Effect.provide(serverLayer)))

  it.effect("a field that does not fit fails with its name, and nothing is written", () =>
    Effect.gen(function*() {
      const server = yield* PolicyServer.PolicyServer
      const cases = [
        [server.updateCamera("wrist", { image: new Uint8Array(72).fill(1), depth: new Float32Array(5) }), "depth"],
        [server.updateCamera("wrist", { image: new Uint8Array(7), extrinsics: new Array(16).fill(0) }), "image"],
        [server.updateCamera("wrist", { image: new Uint8Array(72).fill(1), extrinsics: [1, 2, 3] }), "extrinsics"],
        [server.updateCamera("scene", { image: new Uint8Array(18).fill(1), depth: new Float32Array(6) }), "depth"],
        [server.updateCamera("nope", { intrinsics: new Array(9).fill(0) }), "intrinsics"]
      ] as const
      for (const [effect, field] of cases) {
        const error = failure(yield* Effect.exit(effect))
        expect(error).toBeInstanceOf(SensorError)
        expect(error.field).toBe(field)
      }
      const obs = yield* server.makeObs()
      for (const camera of obs.cameras) {
        expect(Tensor.toArray(camera.image).every((v) => v === 0)).toBe(true)
        expect(camera.timestamp).toBe(0)
      }
      expect(Array.from(obs.cameras[0]!.extrinsics)).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    }).pipe(Effect.provide(serverLayer)))
})

/**
 * An in-memory network whose server connections offer `Connection.close`,
 * noting each code and reason (the connection then ends as usual, with its
 * handler), as a WebSocket server's connections do.
 */
const closableMemory = () => {
  const closes: Array<readonly [number, string]> = []
  const { client, server } = MemoryTransport.make()
  const closable = ServerTransport.of({
    address: server.address,
    serve: (handler) =>
      server.serve((connection) =>
        handler({ ...connection, close: (code, reason) => Effect.sync(() => void closes.push([code, reason])) })
      )
  })
  return {
    closes,
    layer: Layer.merge(Layer.succeed(ServerTransport, closable), Layer.succeed(ClientTransport, client))
  }
}

class EStop extends Schema.TaggedError<EStop>()("EStop", {}) {}

describe("PolicyServer says why it closes a connection, where the transport can (Connection.close)", () => {
  const base = { cameras: Robot.cameras, proprios: Robot.proprios }
  const obsOf = Effect.map(PolicyServer.makeObs(), (obs) => ({ obs }))

  it.live("a request its handler cannot answer: 1011, the request and the error's message", () =>
    Effect.gen(function*() {
      const net = closableMemory()
      yield* Effect.gen(function*() {
        yield* PolicyServer.make({
          ...base,
          handlers: {
            reset: Effect.fail(new Error("e-stop pressed\n  (button 2)")),
            applyAction: () => Effect.void
          }
        })
        const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
        assert.strictEqual(failure(yield* Effect.exit(client.reset)).reason, "Disconnected")
      }).pipe(Effect.scoped, Effect.provide(net.layer))
      for (const [request, fails] of [["metadata", "getMetadata"], ["obs_request", "getObs"]] as const) {
        yield* Effect.gen(function*() {
          yield* PolicyServer.make({
            ...base,
            handlers: {
              reset: obsOf,
              [fails]: fails === "getMetadata" ? Effect.fail(new EStop()) : Effect.die("camera driver crashed"),
              applyAction: () => Effect.void
            }
          })
          const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
          const asked: Effect.Effect<unknown, RequestError> = request === "metadata" ? client.getMetadata : client.getObs
          const exit = yield* Effect.exit(asked)
          assert.strictEqual(failure(exit).reason, "Disconnected")
        }).pipe(Effect.scoped, Effect.provide(net.layer))
      }
      assert.deepStrictEqual(net.closes, [
        [1011, "chiral: reset failed: e-stop pressed (button 2)"],
        // an error without a message is named by its tag; a defect by its own message
        [1011, "chiral: metadata failed: EStop"],
        [1011, "chiral: obs_request failed: camera driver crashed"]
      ])
    }))

  it.live("a reply that cannot be encoded, and a legacy step the action gate refuses: 1011 and why", () =>
    Effect.gen(function*() {
      const net = closableMemory()
      yield* Effect.gen(function*() {
        yield* PolicyServer.make({
          ...base,
          // a function is no msgpack value
          handlers: { reset: obsOf, getMetadata: Effect.succeed({ f: () => 1 } as never), applyAction: () => Effect.void }
        })
        const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
        assert.strictEqual(failure(yield* Effect.exit(client.getMetadata)).reason, "Disconnected")
      }).pipe(Effect.scoped, Effect.provide(net.layer))
      yield* Effect.gen(function*() {
        yield* PolicyServer.make({ ...base, actionSpec: { dim: 3 }, handlers: { reset: obsOf, applyAction: () => Effect.void } })
        const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
        assert.strictEqual(failure(yield* Effect.exit(client.step([[0, 0]]))).reason, "Disconnected")
      }).pipe(Effect.scoped, Effect.provide(net.layer))
      assert.deepStrictEqual(net.closes, [
        [1011, "chiral: cannot encode the metadata reply: data: cannot encode a function as msgpack"],
        [1011, "chiral: step refused (invalid): shape [1, 2], expected [3] or [N, 3]"]
      ])
    }))

  it.live("a connection onConnect refuses: 1008 and the error's message; onDisconnect does not run", () =>
    Effect.gen(function*() {
      const net = closableMemory()
      let disconnects = 0
      yield* Effect.gen(function*() {
        yield* PolicyServer.make({
          ...base,
          handlers: {
            reset: obsOf,
            applyAction: () => Effect.void,
            onConnect: (info) => Effect.fail(new Error(`controller busy, ${info.peer} refused`)),
            onDisconnect: () => Effect.sync(() => void disconnects++)
          }
        })
        const client = yield* PolicyClient.make({ quiet: true, reconnect: false })
        assert.strictEqual(failure(yield* Effect.exit(client.getMetadata)).reason, "Disconnected")
      }).pipe(Effect.scoped, Effect.provide(net.layer))
      assert.deepStrictEqual(net.closes, [[1008, "chiral: refused by the robot's onConnect: controller busy, client 1 refused"]])
      assert.strictEqual(disconnects, 0)
    }))
})
