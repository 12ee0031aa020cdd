/** One proprio vector's live value in its own Ref (replaced whole on update, like CameraState). */
import { type Proprio, Tensor } from "@chiral/protocol"
import { Effect, Ref } from "effect"
import type * as ProprioConfig from "./ProprioConfig.js"
import { type SensorInput, toTensor, type WriteOptions } from "./SensorData.js"
import { SensorError } from "./SensorError.js"

export interface ProprioState {
  readonly config: ProprioConfig.ProprioConfig
  readonly ref: Ref.Ref<Proprio>
  readonly update: (values: SensorInput, options?: WriteOptions) => Effect.Effect<void, SensorError>
  readonly snapshot: Effect.Effect<Proprio>
}

export const make = (config: ProprioConfig.ProprioConfig): Effect.Effect<ProprioState> =>
  Effect.gen(function*() {
    const shape = [config.size]
    const ref = yield* Ref.make<Proprio>({ name: config.name, data: Tensor.zeros(config.dtype, shape) })
    const update = (input: SensorInput, options?: WriteOptions) => {
      const data = toTensor(input, config.dtype, shape, options)
      if (typeof data === "string") {
        return Effect.fail(new SensorError({ sensor: config.name, field: "proprio", reason: data }))
      }
      return Ref.set(ref, { name: config.name, data })
    }
    return { config, ref, update, snapshot: Ref.get(ref) }
  })

