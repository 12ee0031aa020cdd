/**
 * Errors of the robot-side sensor state: a write that does not match the
 * configured camera or proprio, and a configuration that cannot work.
 */
import { Schema } from "effect"

/** An update* call whose data does not fit the configured sensor. */
export class SensorError extends Schema.TaggedError<SensorError>()("SensorError", {
  /** The camera or proprio name given by the caller. */
  sensor: Schema.String,
  field: Schema.Literals(["image", "depth", "intrinsics", "extrinsics", "proprio"]),
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.sensor}.${this.field}: ${this.reason}`
  }
}

/** Camera or proprio configs that cannot describe a robot (bad sizes, duplicate names). */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  sensor: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.sensor}: ${this.reason}`
  }
}
