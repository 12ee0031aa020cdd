// A client that receives into recycled memory (`receiveBuffers: "recycled"`),
// through PolicyServer ↔ PolicyClient: an observation the policy holds stays
// intact while later ones' memory is recycled under it.
import { PolicyClient, PolicyServer } from "@chiral/core"
import { lending, type Observation } from "@chiral/protocol"
import { Effect } from "effect"
import { collectUntil } from "./Collector.js"

/** Two cameras 128x64 + depth: ~115 KB per observation, fragmented by Zenoh and pooled by both transports. */
export const cameras = [
  { name: "left", height: 64, width: 128, channels: 3, hasDepth: true },
  { name: "right", height: 64, width: 128, channels: 3, hasDepth: true }
] as const

const pixels = 64 * 128

/** The robot whose every image byte is `k % 256` and every depth `k + 0.5` after `show(k)`. */
export const startRobot = Effect.gen(function*() {
  const server = yield* PolicyServer.make({
    cameras: [...cameras],
    proprios: [],
    handlers: { reset: Effect.map(PolicyServer.makeObs(), (obs) => ({ obs })), applyAction: () => Effect.void }
  })
  const show = (k: number) =>
    Effect.forEach(cameras, (c) =>
      Effect.andThen(
        server.updateImage(c.name, new Uint8Array(pixels * 3).fill(k % 256)),
        server.updateDepth(c.name, new Float32Array(pixels).fill(k + 0.5))
      ), { discard: true })
  return { server, show }
})

/** Whether `obs` is whole and shows `k`, every camera. */
export const shows = (obs: Observation, k: number): boolean =>
  obs.cameras.length === cameras.length &&
  obs.cameras.every((c) =>
    c.image.data.length === pixels * 3 && (c.image.data as Uint8Array).every((v) => v === k % 256) &&
    c.depth !== null && c.depth.data.length === pixels && (c.depth.data as Float32Array).every((v) => v === k + 0.5)
  )

/**
 * Takes `rounds` observations, each showing its round, holding the first:
 * the others' memory must come back (`lending.released` grows; the client
 * itself holds the latest one or two), the first must stay whole and lent.
 */
export const heldObservationStaysWhole = (
  client: PolicyClient.PolicyClientApi,
  show: (k: number) => Effect.Effect<void, unknown>,
  rounds = 8
) =>
  Effect.gen(function*() {
    yield* show(1)
    const held = yield* client.getObs
    if (!shows(held, 1)) return yield* Effect.die("the first observation arrived damaged")
    const memory = held.cameras[0]!.image.data.buffer
    if (!lending.isLent(memory)) return yield* Effect.die("the observation is not in lent memory")
    const releasedBefore = lending.released
    for (let k = 2; k <= rounds; k++) {
      yield* show(k)
      const obs = yield* client.getObs
      if (!shows(obs, k)) return yield* Effect.die(`observation ${k} arrived damaged`)
      const back = yield* Effect.promise(() => collectUntil(() => lending.released >= releasedBefore + k - 3))
      if (!back) return yield* Effect.die(`the memory of observations before ${k} did not come back`)
      if (!shows(held, 1)) return yield* Effect.die(`the held observation changed after observation ${k}`)
      if (!lending.isLent(memory)) return yield* Effect.die("the held observation's memory was released")
    }
  })

/**
 * With fresh receive buffers (the default), through the robot of
 * `startRobot`: an observation arrives whole, and nothing of it is lent.
 */
export const freshObservationIsNotLent = Effect.gen(function*() {
  const { show } = yield* startRobot
  const client = yield* PolicyClient.make({ quiet: true })
  yield* show(3)
  const obs = yield* client.getObs
  if (!shows(obs, 3)) return yield* Effect.die("the observation arrived damaged")
  if (lending.isLent(obs.cameras[0]!.image.data.buffer)) return yield* Effect.die("the observation is in lent memory")
})
