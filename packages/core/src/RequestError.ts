/** Why a PolicyClient request got no answer. */
import { Schema } from "effect"

export class RequestError extends Schema.TaggedError<RequestError>()("RequestError", {
  /** The request's wire type: "metadata", "reset", "obs_request", "action", "apply_action". */
  request: Schema.String,
  reason: Schema.Literals([
    /** No answer within the timeout. */
    "Timeout",
    /** The connection is closed or was lost (before or while waiting). */
    "Disconnected",
    /**
     * The request could not be encoded (an action with a value that is not
     * finite, or of another size than the robot's metadata gives, is refused
     * here, before it is sent), or its answer could not be decoded.
     */
    "Malformed",
    /**
     * The request would act on an observation of an earlier connection (the
     * robot may have restarted since): a legacy `step` sent before anything
     * of the robot now connected was observed; or on one from before a reset:
     * a legacy `step` while a reset is under way; or into a silence: a legacy
     * `step` that would go while the robot has left a request unanswered
     * beyond `maxRobotSilence`. Refused before it is sent.
     */
    "Stale"
  ]),
  detail: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `${this.request}: ${this.reason}${this.detail === undefined ? "" : ` (${this.detail})`}`
  }
}
