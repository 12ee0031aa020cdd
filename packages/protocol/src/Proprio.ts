import { Schema } from "effect"
import { Tensor } from "./Tensor.js"

/** A named proprioceptive vector (joint positions, gripper width…), 1-D. */
export interface Proprio {
  readonly name: string
  readonly data: Tensor
}

const schema: Schema.Codec<Proprio> = Schema.Struct({ name: Schema.String, data: Tensor.schema })

export const Proprio = {
  schema,
  /** A float32 proprio vector from plain numbers. */
  fromNumbers: (name: string, values: ArrayLike<number>): Proprio => ({
    name,
    data: Tensor.make("float32", [values.length], Float32Array.from(values))
  })
} as const
