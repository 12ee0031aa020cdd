// Cost of one sensor tick (2 cameras 64x48 + depth, extrinsics) through SensorState, hot and at 30 Hz.
import { Effect } from "effect"
import * as SensorState from "../../packages/core/dist/SensorState.js"
import { syntheticImage, syntheticDepth, extrinsicsAt } from "../../apps/cli/dist/SimulatedRobot.js"
const W = 64, H = 48, names = ["cam_0", "cam_1"]
const state = Effect.runSync(SensorState.make({ cameras: names.map((name) => ({ name, width: W, height: H, hasDepth: true })), proprios: [{ name: "joint_pos", size: 7 }] }))
const images = names.map((_, c) => [0, 1, 2, 3].map((p) => syntheticImage(c, p, W, H)))
const depths = names.map((_, c) => [0, 1, 2, 3].map((p) => syntheticDepth(c, p, W, H)))
let frame = 0
const write = (f) => Effect.forEach(names, (n, c) => state.updateCamera(n, { image: images[c][f % 4], depth: depths[c][f % 4], extrinsics: extrinsicsAt(c, f, 30) }, { copy: false }), { discard: true })
const once = () => { const t = performance.now(); Effect.runSync(write(++frame)); return performance.now() - t }
const med = (a) => { a.sort((x, y) => x - y); return `p50 ${(a[a.length >> 1] * 1000).toFixed(1)} µs p90 ${(a[Math.floor(a.length * .9)] * 1000).toFixed(1)} µs` }
const hot = []; for (let i = 0; i < 3000; i++) hot.push(once())
console.log("hot  ", med(hot.slice(1000)))
const cold = []; let n = 0
await new Promise((res) => { const iv = setInterval(() => { cold.push(once()); if (++n === 150) { clearInterval(iv); res() } }, 33) })
console.log("30 Hz", med(cold.slice(30)))
