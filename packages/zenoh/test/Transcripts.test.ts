/**
 * The zenoh-pico transcripts in fixtures/: every batch of both directions decodes, re-encodes to
 * the same bytes, and the published payloads come back byte for byte with their keys.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Batch, Extension, Fragmenter, NetworkMessage, TransportMessage, ZBuf } from "@chiral/zenoh"

type Direction = "connector->listener" | "listener->connector"

const load = (name: string): Array<{ dir: Direction; hex: string }> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), "utf8"))

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"))

interface Decoded {
  readonly batches: Array<Uint8Array>
  readonly messages: Array<TransportMessage.TransportMessage>
  readonly network: Array<NetworkMessage.NetworkMessage>
  readonly pushes: Array<{ readonly key: string; readonly payload: Uint8Array }>
  readonly reassembler: Fragmenter.Reassembler
  readonly leftover: number
}

/** Splits one direction with the recorded chunk boundaries and decodes everything in it. */
const decodeDirection = (chunks: Array<{ dir: Direction; hex: string }>, dir: Direction, patch: number): Decoded => {
  const splitter = new Batch.BatchSplitter()
  const batches: Array<Uint8Array> = []
  for (const c of chunks) {
    if (c.dir !== dir) continue
    splitter.push(fromHex(c.hex))
    for (let b = splitter.next(); b !== undefined; b = splitter.next()) batches.push(b)
  }
  const messages: Array<TransportMessage.TransportMessage> = []
  const network: Array<NetworkMessage.NetworkMessage> = []
  const keyExprs = new Map<number, string>()
  const pushes: Array<{ key: string; payload: Uint8Array }> = []
  const reassembler = new Fragmenter.Reassembler({
    limit: 1 << 20,
    markers: patch >= 1,
    snModulus: TransportMessage.snModulus(TransportMessage.DEFAULT_RESOLUTION),
    sizeHint: NetworkMessage.pushSizeHint
  })
  const onNetwork = (m: NetworkMessage.NetworkMessage) => {
    network.push(m)
    if (m._tag === "Declare" && m.declaration._tag === "DeclareKeyExpr") {
      keyExprs.set(m.declaration.id, m.declaration.wireExpr.suffix!)
    }
    if (m._tag === "Push" && m.body._tag === "Put") {
      const prefix = m.wireExpr.scope === 0 ? "" : keyExprs.get(m.wireExpr.scope)
      assert.isDefined(prefix, `scope ${m.wireExpr.scope} declared`)
      pushes.push({ key: prefix + (m.wireExpr.suffix ?? ""), payload: m.body.payload })
    }
  }
  for (const body of batches) {
    const decoded = TransportMessage.decodeBatch(body)
    // Re-encoding every message of the batch gives the batch back, byte for byte.
    const w = new ZBuf.ZWriter(body.length)
    for (const m of decoded) TransportMessage.encode(w, m)
    assert.deepStrictEqual(w.finish(), body)
    for (const m of decoded) {
      messages.push(m)
      if (m._tag === "Frame") m.messages.forEach(onNetwork)
      if (m._tag === "Fragment") {
        const whole = reassembler.push(m)
        if (whole !== undefined) {
          const r = new ZBuf.ZReader(whole)
          const msg = NetworkMessage.decode(r)
          assert.strictEqual(r.remaining, 0, "the reassembled bytes are exactly one network message")
          const again = new ZBuf.ZWriter(whole.length)
          NetworkMessage.encode(again, msg)
          assert.deepStrictEqual(again.finish(), whole)
          onNetwork(msg)
        }
      }
    }
  }
  return { batches, messages, network, pushes, reassembler, leftover: splitter.pending }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

const declarations = (d: Decoded) =>
  d.network.flatMap((m) => (m._tag === "Declare" ? [[m.interestId, m.declaration._tag] as const] : []))

describe("zenoh-pico transcripts", () => {
  it.effect("sub_listens_pub_connects: handshake, declarations and three small PUTs", () =>
    Effect.sync(() => {
      const chunks = load("sub_listens_pub_connects.json")
      const c = decodeDirection(chunks, "connector->listener", 1)
      const l = decodeDirection(chunks, "listener->connector", 1)
      assert.strictEqual(c.leftover + l.leftover, 0)
      assert.deepStrictEqual(c.batches.map((b) => b.length), [24, 4, 1, 17, 27, 27, 27, 5])
      assert.deepStrictEqual(l.batches.map((b) => b.length), [25, 3, 18, 7, 5])

      const syn = c.messages[0]!
      assert(syn._tag === "Init" && !syn.ack)
      assert.strictEqual(syn.version, 0x09)
      assert.strictEqual(syn.whatami, TransportMessage.Whatami.Peer)
      assert.strictEqual(syn.zid.length, 16)
      assert.strictEqual(syn.batchSize, 2048)
      assert.strictEqual(syn.resolution, 0x0a)
      assert.strictEqual(Extension.find(syn.extensions, Extension.Id.Patch)?.value, 1n)
      const ack = l.messages[0]!
      assert(ack._tag === "Init" && ack.ack)
      assert.strictEqual(ack.batchSize, 2048)
      assert.deepStrictEqual(ack.cookie, new Uint8Array(0))
      const open = c.messages[1]!
      assert(open._tag === "Open" && !open.ack)
      assert.strictEqual(open.leaseMillis, 10_000)
      assert.strictEqual(open.initialSn, 0)

      assert.deepStrictEqual(declarations(l), [[0, "DeclareKeyExpr"], [0, "DeclareSubscriber"], [0, "DeclareFinal"]])
      const sub = l.network[1]!
      assert(sub._tag === "Declare" && sub.declaration._tag === "DeclareSubscriber")
      assert.deepStrictEqual(sub.declaration.wireExpr, { scope: 1, suffix: undefined, senderMapping: true })
      assert.deepStrictEqual(declarations(c), [[undefined, "DeclareKeyExpr"], [undefined, "UndeclareKeyExpr"]])
      assert.deepStrictEqual(
        c.pushes.map((p) => [p.key, text(p.payload)]),
        [0, 1, 2].map((i) => ["chiral/c2s", `[   ${i}] Pub from Pico!`])
      )
    }))

  it.effect("pub_listens_sub_connects: the connector subscribes, the listener publishes", () =>
    Effect.sync(() => {
      const chunks = load("pub_listens_sub_connects.json")
      const c = decodeDirection(chunks, "connector->listener", 1)
      const l = decodeDirection(chunks, "listener->connector", 1)
      assert.strictEqual(c.leftover + l.leftover, 0)
      assert.deepStrictEqual(declarations(c), [[undefined, "DeclareKeyExpr"], [undefined, "DeclareSubscriber"]])
      const sub = c.network[1]!
      assert(sub._tag === "Declare" && sub.declaration._tag === "DeclareSubscriber")
      assert.deepStrictEqual(sub.declaration.wireExpr, { scope: 0, suffix: "chiral/s2c", senderMapping: true })
      assert.deepStrictEqual(declarations(l), [
        [0, "DeclareKeyExpr"],
        [0, "DeclareFinal"],
        [undefined, "UndeclareKeyExpr"]
      ])
      assert.deepStrictEqual(
        l.pushes.map((p) => [p.key, text(p.payload)]),
        [2, 3, 4].map((i) => ["chiral/s2c", `[   ${i}] Pub from Pico!`])
      )
      const frames = l.messages.filter((m) => m._tag === "Frame")
      assert.deepStrictEqual(frames.map((f) => [f.reliable, f.sn]), [0, 1, 2, 3, 4, 5].map((sn) => [true, sn]))
    }))

  it.effect("fragmented: a 150000-byte PUT reassembled from three FRAGMENTs", () =>
    Effect.sync(() => {
      const chunks = load("fragmented.json")
      const c = decodeDirection(chunks, "connector->listener", 1)
      const l = decodeDirection(chunks, "listener->connector", 1)
      assert.strictEqual(c.leftover + l.leftover, 0)
      const syn = c.messages[0]!
      assert(syn._tag === "Init")
      assert.strictEqual(syn.batchSize, undefined, "no S flag: 65535")
      const fragments = c.messages.filter((m) => m._tag === "Fragment")
      assert.deepStrictEqual(
        fragments.map((f) => [f.sn, f.reliable, f.more, f.first, f.payload.length]),
        [
          [1, false, true, true, 65530],
          [2, false, true, false, 65531],
          [3, false, false, false, 18945],
          [4, false, true, true, 65530]
        ]
      )
      assert.deepStrictEqual(c.batches.slice(-4).map((b) => b.length), [65533, 65533, 18947, 65533])
      assert.strictEqual(c.pushes.length, 1)
      const [put] = c.pushes
      assert.strictEqual(put!.key, "chiral/c2s")
      assert.strictEqual(put!.payload.length, 150_000)
      let mismatches = 0
      for (let j = 0; j < 150_000; j++) if (put!.payload[j] !== ((j * 31) & 0xff)) mismatches++
      assert.strictEqual(mismatches, 0)
      // The recording stops inside the second PUT.
      assert.isTrue(c.reassembler.inProgress)
      assert.strictEqual(c.reassembler.collected, 65530)
      assert.deepStrictEqual(declarations(l), [[0, "DeclareKeyExpr"], [0, "DeclareSubscriber"], [0, "DeclareFinal"]])
    }))
})
