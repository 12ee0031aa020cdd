// A Foxglove WebSocket viewer for tests, on @foxglove/ws-protocol's own client:
// collects the channels a server advertises and the messages of the topics it
// subscribes to, and waits on conditions over them.
import { type Channel, FoxgloveClient, type IWebSocket } from "@foxglove/ws-protocol"
import { Effect, Schedule } from "effect"
import WebSocket from "ws"

export interface Viewer {
  /** Advertised channels by topic. */
  readonly channels: Map<string, Channel>
  /** Messages received, in order, with their topic. */
  readonly messages: Array<{ readonly topic: string; readonly data: Uint8Array }>
  readonly subscribe: (topic: string) => void
  /** Completes once `condition` holds (checked every 10 ms). */
  readonly until: (condition: () => boolean) => Effect.Effect<void>
}

export const connect = (address: string) =>
  Effect.acquireRelease(
    Effect.sync((): Viewer & { readonly close: () => void } => {
      const ws = new WebSocket(address, [FoxgloveClient.SUPPORTED_SUBPROTOCOL])
      const client = new FoxgloveClient({ ws: ws as unknown as IWebSocket })
      const channels = new Map<string, Channel>()
      const topics = new Map<number, string>()
      const messages: Array<{ topic: string; data: Uint8Array }> = []
      client.on("error", () => undefined)
      client.on("advertise", (advertised) => {
        for (const c of advertised) channels.set(c.topic, c)
      })
      client.on("message", ({ data, subscriptionId }) => {
        const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()
        messages.push({ topic: topics.get(subscriptionId) ?? "?", data: bytes })
      })
      return {
        channels,
        messages,
        subscribe: (topic) => {
          const channel = channels.get(topic)
          if (channel === undefined) throw new Error(`${topic} is not advertised`)
          topics.set(client.subscribe(channel.id), topic)
        },
        until: (condition) =>
          Effect.sync(condition).pipe(Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(10) }), Effect.asVoid),
        close: () => client.close()
      }
    }),
    (viewer) => Effect.sync(viewer.close)
  )
