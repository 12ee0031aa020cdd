/**
 * Turns the frames of a chiral session into an episode: decodes each frame
 * and writes what it carries through an `EpisodeWriter`. Runs in the
 * recorder's worker thread (see `Recorder`), one frame at a time.
 *
 * What is written, per message type:
 *  - `obs_response`, `reset_response`, `step_response` (server → client): the
 *    observation on its topics (`Topics`), numbered by `seq`;
 *  - `reset_response` also: an MCAP metadata record `chiral.reset` with
 *    `seq`, `connection`, `log_time` (ns) and `info` (JSON);
 *  - `metadata_response`: a metadata record `chiral.metadata`, one key per
 *    metadata key (value as JSON), written again only when it changes;
 *  - `apply_action`, `action` (client → server): `/action`;
 *  - requests without a body (`metadata`, `reset`, `obs_request`): nothing.
 * Frames that do not decode are counted, not written.
 */
import { decodeFrame, type Message } from "@chiral/protocol"
import { Result } from "effect"
import type { EpisodeWriter } from "./EpisodeWriter.js"
import * as Json from "./Json.js"
import * as Topics from "./Topics.js"

/** Which way a frame went: client → server (requests, actions) or server → client (answers). */
export type Direction = "c2s" | "s2c"

export interface FrameLogCounts {
  /** Frames written (decoded and recorded, requests without body included). */
  frames: number
  observations: number
  actions: number
  /** Frames that did not decode as chiral messages. */
  undecodable: number
  /** Images Foxglove has no encoding for (dtype/shape), as `camera image dtype[shape]`, each once. */
  skippedImages: Array<string>
}

const toNanos = (epochMillis: number): bigint => BigInt(Math.round(epochMillis * 1e6))

export class FrameLog {
  readonly counts: FrameLogCounts = { frames: 0, observations: 0, actions: 0, undecodable: 0, skippedImages: [] }
  private seq = 0
  private lastMetadata: string | undefined

  private readonly writer: EpisodeWriter

  constructor(writer: EpisodeWriter) {
    this.writer = writer
  }

  /** Records one frame received at `receivedAt` (ms since the Unix epoch, fractional). */
  async frame(direction: Direction, connection: string, bytes: Uint8Array, receivedAt: number): Promise<void> {
    const decoded = decodeFrame(bytes)
    if (Result.isFailure(decoded)) {
      this.counts.undecodable++
      return
    }
    await this.message(direction, connection, decoded.success, toNanos(receivedAt))
    this.counts.frames++
  }

  private async message(direction: Direction, connection: string, message: Message, logTime: bigint): Promise<void> {
    switch (message.type) {
      case "apply_action":
      case "action":
        if (direction !== "c2s") return
        this.counts.actions++
        return this.writer.write([Topics.actionMessage(message, connection, logTime)], logTime, this.seq)
      case "metadata_response": {
        const entries = Object.entries(message.data).map(([k, v]) => [k, JSON.stringify(Json.toJsonValue(v))] as const)
        const text = JSON.stringify(entries)
        if (text === this.lastMetadata) return
        this.lastMetadata = text
        return this.writer.metadata("chiral.metadata", new Map(entries))
      }
      case "reset_response":
      case "obs_response":
      case "step_response":
        return this.observation(connection, message, logTime)
      default:
        return
    }
  }

  private async observation(
    connection: string,
    message: Extract<Message, { type: "reset_response" | "obs_response" | "step_response" }>,
    logTime: bigint
  ): Promise<void> {
    const seq = ++this.seq
    const reply: Topics.ObservationReply = message.type === "step_response"
      ? { reply: message.type, obs: message.obs, info: message.info, reward: message.reward, terminated: message.terminated, truncated: message.truncated }
      : message.type === "reset_response"
      ? { reply: message.type, obs: message.obs, info: message.info }
      : { reply: message.type, obs: message.obs }
    const { messages, skipped } = Topics.observationMessages(reply, { seq, connection })
    for (const s of skipped) if (!this.counts.skippedImages.includes(s)) this.counts.skippedImages.push(s)
    await this.writer.write(messages, logTime, seq)
    this.counts.observations++
    if (message.type === "reset_response") {
      await this.writer.metadata(
        "chiral.reset",
        new Map([
          ["seq", String(seq)],
          ["connection", connection],
          ["log_time", String(logTime)],
          ["info", JSON.stringify(Json.toJsonValue(message.info))]
        ])
      )
    }
  }
}
