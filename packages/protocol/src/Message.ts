import { Schema } from "effect"
import { Observation } from "./Observation.js"
import { Tensor } from "./Tensor.js"

/** User maps (metadata data, info, extra) carry any msgpack values. */
export type UserMap = Readonly<Record<string, unknown>>
/** Camera name → capture timestamp of the observation an action was computed from. */
export type ObsTimestamps = Readonly<Record<string, number>>

/** C→S: ask for the server's metadata. */
export interface MetadataRequest {
  readonly type: "metadata"
}
/** C→S: reset the environment. */
export interface ResetRequest {
  readonly type: "reset"
}
/** C→S: ask for the latest observation. */
export interface ObsRequest {
  readonly type: "obs_request"
}
/** C→S, fire-and-forget: one action (usually shape [D], float32). */
export interface ApplyAction {
  readonly type: "apply_action"
  readonly action: Tensor
  readonly obsTimestamps: ObsTimestamps
}
/** C→S, legacy C++: an N×D float32 action chunk; the server answers with `step_response`. */
export interface LegacyAction {
  readonly type: "action"
  readonly action: Tensor
  readonly obsTimestamps: ObsTimestamps
}
/** S→C: the answer to `metadata`. */
export interface MetadataResponse {
  readonly type: "metadata_response"
  readonly data: UserMap
}
/** S→C: the answer to `reset`. */
export interface ResetResponse {
  readonly type: "reset_response"
  readonly obs: Observation
  readonly info: UserMap
}
/** S→C: the answer to `obs_request`. */
export interface ObsResponse {
  readonly type: "obs_response"
  readonly obs: Observation
}
/** S→C, legacy C++: the answer to `action`. `reward` travels as float32. */
export interface StepResponse {
  readonly type: "step_response"
  readonly obs: Observation
  readonly reward: number
  readonly terminated: boolean
  readonly truncated: boolean
  readonly info: UserMap
}

export type Message =
  | MetadataRequest
  | ResetRequest
  | ObsRequest
  | ApplyAction
  | LegacyAction
  | MetadataResponse
  | ResetResponse
  | ObsResponse
  | StepResponse

/** The wire's own tag. */
export type MessageType = Message["type"]

export const messageTypes: ReadonlyArray<MessageType> = [
  "metadata",
  "reset",
  "obs_request",
  "apply_action",
  "action",
  "metadata_response",
  "reset_response",
  "obs_response",
  "step_response"
]

const userMap = Schema.Record(Schema.String, Schema.Unknown)
const obsTimestamps = Schema.Record(Schema.String, Schema.Number)

const MetadataRequestSchema: Schema.Codec<MetadataRequest> = Schema.Struct({ type: Schema.Literal("metadata") })
const ResetRequestSchema: Schema.Codec<ResetRequest> = Schema.Struct({ type: Schema.Literal("reset") })
const ObsRequestSchema: Schema.Codec<ObsRequest> = Schema.Struct({ type: Schema.Literal("obs_request") })
const ApplyActionSchema: Schema.Codec<ApplyAction> = Schema.Struct({
  type: Schema.Literal("apply_action"),
  action: Tensor.schema,
  obsTimestamps
})
const LegacyActionSchema: Schema.Codec<LegacyAction> = Schema.Struct({
  type: Schema.Literal("action"),
  action: Tensor.schema,
  obsTimestamps
})
const MetadataResponseSchema: Schema.Codec<MetadataResponse> = Schema.Struct({
  type: Schema.Literal("metadata_response"),
  data: userMap
})
const ResetResponseSchema: Schema.Codec<ResetResponse> = Schema.Struct({
  type: Schema.Literal("reset_response"),
  obs: Observation.schema,
  info: userMap
})
const ObsResponseSchema: Schema.Codec<ObsResponse> = Schema.Struct({
  type: Schema.Literal("obs_response"),
  obs: Observation.schema
})
const StepResponseSchema: Schema.Codec<StepResponse> = Schema.Struct({
  type: Schema.Literal("step_response"),
  obs: Observation.schema,
  reward: Schema.Number,
  terminated: Schema.Boolean,
  truncated: Schema.Boolean,
  info: userMap
})

const schema: Schema.Codec<Message> = Schema.Union([
  MetadataRequestSchema,
  ResetRequestSchema,
  ObsRequestSchema,
  ApplyActionSchema,
  LegacyActionSchema,
  MetadataResponseSchema,
  ResetResponseSchema,
  ObsResponseSchema,
  StepResponseSchema
])

export const Message = {
  /** Validates a whole message value (use at API edges, not on the decode hot path). */
  schema,
  schemas: {
    metadata: MetadataRequestSchema,
    reset: ResetRequestSchema,
    obs_request: ObsRequestSchema,
    apply_action: ApplyActionSchema,
    action: LegacyActionSchema,
    metadata_response: MetadataResponseSchema,
    reset_response: ResetResponseSchema,
    obs_response: ObsResponseSchema,
    step_response: StepResponseSchema
  },
  types: messageTypes,
  isType: (u: unknown): u is MessageType => typeof u === "string" && (messageTypes as ReadonlyArray<string>).includes(u),
  /** The observation a message carries, if any. */
  observation: (m: Message): Observation | undefined =>
    m.type === "reset_response" || m.type === "obs_response" || m.type === "step_response" ? m.obs : undefined
} as const
