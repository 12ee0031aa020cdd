/** A proprioceptive vector (joint positions, gripper width…): name, length, dtype. */
import { Dtype } from "@chiral/protocol"
import { ConfigError } from "./SensorError.js"

export interface ProprioConfig {
  readonly name: string
  readonly size: number
  readonly dtype: Dtype
}

export interface ProprioConfigInput {
  readonly name: string
  readonly size: number
  /** Default "float32" (what the Python reference always sends). */
  readonly dtype?: Dtype | undefined
}

export const make = (input: ProprioConfigInput): ProprioConfig | ConfigError => {
  if (!Number.isSafeInteger(input.size) || input.size < 0) {
    return new ConfigError({ sensor: input.name, reason: `size must be a non-negative integer, got ${input.size}` })
  }
  const dtype = input.dtype ?? "float32"
  if (!Dtype.is(dtype)) return new ConfigError({ sensor: input.name, reason: `unknown dtype ${JSON.stringify(dtype)}` })
  return { name: input.name, size: input.size, dtype }
}
