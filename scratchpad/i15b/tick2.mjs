import { Effect } from "effect"
import { toTensor } from "../../packages/core/dist/SensorData.js"
import { toRowMajor } from "../../packages/core/dist/Matrix.js"
import { syntheticImage, syntheticDepth, extrinsicsAt } from "../../apps/cli/dist/SimulatedRobot.js"
const W = 64, H = 48
const images = [0, 1].map((c) => [0, 1, 2, 3].map((p) => syntheticImage(c, p, W, H)))
const depths = [0, 1].map((c) => [0, 1, 2, 3].map((p) => syntheticDepth(c, p, W, H)))
let f = 0, sink
const plain = () => { f++; for (let c = 0; c < 2; c++) { const e = toRowMajor(extrinsicsAt(c, f, 30), 4); const i = toTensor(images[c][f % 4], "uint8", [H, W, 3], { copy: false }); const d = toTensor(depths[c][f % 4], "float32", [H, W], { copy: false }); sink = { ...sink, i, d, e, timestamp: performance.now() } } }
const cases = { "Effect.runSync(Effect.void)": () => Effect.runSync(Effect.void), "plain work": plain, "Effect.runSync(sync plain)": () => Effect.runSync(Effect.sync(plain)) }
const med = (a) => { a.sort((x, y) => x - y); return `p50 ${(a[a.length >> 1] * 1000).toFixed(1)} µs` }
for (const [name, fn] of Object.entries(cases)) {
  const hot = []; for (let i = 0; i < 3000; i++) { const t = performance.now(); fn(); hot.push(performance.now() - t) }
  const cold = []; let n = 0
  await new Promise((res) => { const iv = setInterval(() => { const t = performance.now(); fn(); cold.push(performance.now() - t); if (++n === 100) { clearInterval(iv); res() } }, 33) })
  console.log(name.padEnd(30), "hot", med(hot.slice(1000)), " 30 Hz", med(cold.slice(20)))
}
