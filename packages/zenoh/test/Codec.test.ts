/**
 * Codec round trips (every message kind decodes to what was encoded and re-encodes to the same
 * bytes), byte-exact forms from ZENOH.md, and typed failures on bad input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  Batch,
  Extension,
  NetworkMessage,
  TransportMessage,
  ZBuf,
  ZenohBody,
  ZenohDecodeError
} from "@chiral/zenoh"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const bytes = (h: string) => Uint8Array.from(Buffer.from(h.replaceAll(" ", ""), "hex"))
const text = (s: string) => new TextEncoder().encode(s)

const encodeT = (...msgs: Array<TransportMessage.TransportMessage>) => {
  const w = new ZBuf.ZWriter(8)
  for (const m of msgs) TransportMessage.encode(w, m)
  return w.finish()
}

/** encode → decode gives the same value, and encoding that gives the same bytes. */
const roundTrip = (...msgs: Array<TransportMessage.TransportMessage>) => {
  const body = encodeT(...msgs)
  const decoded = TransportMessage.decodeBatch(body)
  assert.deepStrictEqual(decoded, msgs)
  assert.strictEqual(hex(encodeT(...decoded)), hex(body))
  return body
}

const decodeError = (body: Uint8Array): ZenohDecodeError => {
  try {
    TransportMessage.decodeBatch(body)
  } catch (e) {
    if (e instanceof ZenohDecodeError) return e
    throw e
  }
  throw new Error("expected a decode error")
}

const zid = bytes("0102030405060708090a0b0c0d0e0f10")
const none: ReadonlyArray<Extension.Extension> = []
const ts: ZenohBody.Timestamp = { time: 0xe5d2_1234_5678_9abcn, zid: bytes("aabb") }

const put = (payload: Uint8Array, extra?: Partial<ZenohBody.Put>): ZenohBody.Put => ({
  ...ZenohBody.put(payload),
  ...extra
})

describe("transport messages", () => {
  it.effect("INIT: the Rust-style InitSyn bytes, S flag, cookie, extensions", () =>
    Effect.sync(() => {
      const syn: TransportMessage.Init = {
        _tag: "Init",
        ack: false,
        version: 0x09,
        whatami: 1,
        zid,
        resolution: undefined,
        batchSize: undefined,
        cookie: undefined,
        extensions: [Extension.z64(Extension.Id.Patch, 1)]
      }
      assert.strictEqual(hex(roundTrip(syn)), `8109f1${hex(zid)}2701`)
      const ack: TransportMessage.Init = {
        ...syn,
        ack: true,
        zid: bytes("77"),
        resolution: 0x0a,
        batchSize: 2048,
        cookie: bytes("c0ffee"),
        extensions: [Extension.unit(Extension.Id.QoS), Extension.zbuf(Extension.Id.Shm, bytes("0102")), Extension.z64(Extension.Id.Patch, 1)]
      }
      // e1 = INIT|A|S|Z, whatami peer with a 1-byte zid, batch 2048 LE, cookie, QoS+Shm+Patch
      assert.strictEqual(hex(roundTrip(ack)), "e109" + "01" + "77" + "0a" + "0008" + "03c0ffee" + "81" + "c2020102" + "2701")
    }))

  it.effect("OPEN, CLOSE, KEEP_ALIVE: the bytes of the transcripts", () =>
    Effect.sync(() => {
      const open: TransportMessage.Open = {
        _tag: "Open",
        ack: false,
        leaseMillis: 10_000,
        leaseInSeconds: true,
        initialSn: 0,
        cookie: new Uint8Array(0),
        extensions: none
      }
      assert.strictEqual(hex(roundTrip(open)), "420a0000")
      assert.strictEqual(hex(roundTrip({ ...open, ack: true, cookie: undefined })), "620a00")
      assert.strictEqual(hex(roundTrip({ ...open, leaseMillis: 2500, leaseInSeconds: false, initialSn: 300 })), "02c413ac0200")
      assert.strictEqual(hex(roundTrip(TransportMessage.close(0, false))), "0300")
      assert.strictEqual(hex(roundTrip(TransportMessage.close(5, true))), "2305")
      assert.strictEqual(hex(roundTrip(TransportMessage.keepAlive)), "04")
      assert.strictEqual(hex(Batch.encode(encodeT(TransportMessage.keepAlive))), "010004")
      assert.strictEqual(TransportMessage.closeReasonName(7), "CONNECTION_TO_SELF")
    }))

  it.effect("FRAME carries several network messages; FRAGMENT markers; transport OAM", () =>
    Effect.sync(() => {
      const frame = TransportMessage.frame(true, 0x0fff_ffff, [
        NetworkMessage.declare(NetworkMessage.declareSubscriber(1, "chiral/c2s"), 0),
        NetworkMessage.declare(NetworkMessage.declareFinal, 0),
        NetworkMessage.push("chiral/s2c", ZenohBody.put(text("hi")))
      ])
      roundTrip(frame, TransportMessage.keepAlive)
      const fragment: TransportMessage.Fragment = {
        _tag: "Fragment",
        reliable: true,
        more: true,
        sn: 7,
        first: true,
        drop: false,
        extensions: none,
        payload: bytes("5d0101")
      }
      assert.strictEqual(hex(roundTrip(fragment)), "e607025d0101")
      assert.strictEqual(hex(roundTrip({ ...fragment, first: false, more: false, reliable: false })), "06075d0101")
      assert.strictEqual(hex(roundTrip({ ...fragment, drop: true })), "e607820" + "3" + "5d0101")
      roundTrip({ _tag: "Oam", id: 1, extensions: none, body: bytes("00ff") })
      roundTrip({ _tag: "Oam", id: 2, extensions: none, body: 42n })
    }))

  it.effect("a FRAME ends at the first byte that is not a network message header", () =>
    Effect.sync(() => {
      // FRAME sn=1 with one D_FINAL, then CLOSE (Rust may do this; pico never does).
      const [frame, close] = TransportMessage.decodeBatch(bytes("2501 3e001a 0300"))
      assert(frame?._tag === "Frame")
      assert.strictEqual(frame.messages.length, 1)
      assert.strictEqual(close?._tag, "Close")
    }))

  it.effect("failures name the message and the offset", () =>
    Effect.sync(() => {
      const join = decodeError(bytes("07"))
      assert.match(join.reason, /JOIN/)
      const unknownT = decodeError(bytes("0408"))
      assert.strictEqual(unknownT.offset, 1)
      assert.match(unknownT.reason, /unknown transport message id 0x8/)
      // an unknown mandatory extension (0x1f|M) on KEEP_ALIVE: reject
      const mandatory = decodeError(bytes("84 1f"))
      assert.match(mandatory.reason, /unknown mandatory extension/)
      assert.strictEqual(mandatory.offset, 1)
      // an unknown optional one is kept
      const [ka] = TransportMessage.decodeBatch(bytes("84 0f"))
      assert.deepStrictEqual(ka, { _tag: "KeepAlive", extensions: [Extension.unit(0x0f)] })
      const reserved = decodeError(bytes("84 60"))
      assert.match(reserved.reason, /reserved extension encoding/)
      const truncatedInit = decodeError(bytes("0109f1aabb"))
      assert.strictEqual(truncatedInit.what, "INIT-Syn zid")
      const badKey = decodeError(bytes("2500 3d00 03 61ff62 01 00"))
      assert.strictEqual(badKey.what, "PUSH suffix")
      assert.strictEqual(badKey.reason, "invalid UTF-8")
    }))
})

describe("network messages", () => {
  const wrap = (...messages: Array<NetworkMessage.NetworkMessage>) => roundTrip(TransportMessage.frame(true, 3, messages))

  it.effect("PUSH: the transcript's scoped form and full keys with PUT extras", () =>
    Effect.sync(() => {
      const scoped = NetworkMessage.push({ scope: 1, suffix: undefined, senderMapping: true }, ZenohBody.put(text("x")))
      assert.strictEqual(hex(wrap(scoped)), "2503" + "5d0101" + "0178")
      wrap(
        NetworkMessage.push("a/b", put(text("payload"), { timestamp: ts, encoding: { id: 5, schema: undefined } })),
        NetworkMessage.push("a/b", put(text(""), { encoding: { id: 3, schema: text("s") } })),
        NetworkMessage.push(
          "a/b",
          put(text("p"), {
            extensions: [Extension.zbuf(Extension.Id.SourceInfo, bytes("f0" + "11".repeat(16) + "0102")), Extension.zbuf(Extension.Id.Attachment, text("att"))]
          })
        ),
        {
          _tag: "Push",
          wireExpr: { scope: 2, suffix: "/tail", senderMapping: false },
          extensions: [Extension.z64(Extension.Id.NetworkQoS, 0x08), Extension.zbuf(Extension.Id.Timestamp, bytes("0102")), Extension.z64(Extension.Id.NodeId, 7)],
          body: { _tag: "Del", timestamp: ts, extensions: none }
        }
      )
    }))

  it.effect("DECLARE: every declaration kind, with and without an interest id", () =>
    Effect.sync(() => {
      const w = (scope: number, suffix?: string): NetworkMessage.WireExpr => ({ scope, suffix, senderMapping: scope !== 0 })
      const declarations: Array<NetworkMessage.Declaration> = [
        { _tag: "DeclareKeyExpr", id: 1, wireExpr: { scope: 0, suffix: "chiral/c2s", senderMapping: false }, extensions: none },
        { _tag: "UndeclareKeyExpr", id: 1, extensions: none },
        { _tag: "DeclareSubscriber", id: 70000, wireExpr: w(1), extensions: none },
        { _tag: "UndeclareSubscriber", id: 70000, extensions: [Extension.zbuf(Extension.Id.UndeclaredWireExpr, bytes("0100616263"))] },
        { _tag: "DeclareQueryable", id: 2, wireExpr: w(0, "q/**"), extensions: [Extension.z64(0x21, 0x101)] },
        { _tag: "UndeclareQueryable", id: 2, extensions: none },
        { _tag: "DeclareToken", id: 3, wireExpr: w(4, "/t"), extensions: none },
        { _tag: "UndeclareToken", id: 3, extensions: none },
        NetworkMessage.declareFinal
      ]
      wrap(...declarations.map((d) => NetworkMessage.declare(d)))
      wrap(...declarations.map((d) => NetworkMessage.declare(d, 12345)))
      // the transcript's D_SUBSCRIBER: 3e 00 42 01 01 (I=0, M, id 1, scope 1)
      assert.strictEqual(
        hex(wrap(NetworkMessage.declare({ _tag: "DeclareSubscriber", id: 1, wireExpr: w(1), extensions: none }, 0))),
        "2503" + "3e00" + "420101"
      )
      assert.strictEqual(hex(wrap(NetworkMessage.declare(NetworkMessage.declareFinal, 0))), "2503" + "3e00" + "1a")
    }))

  it.effect("INTEREST in every mode, REQUEST / RESPONSE / RESPONSE_FINAL, network OAM", () =>
    Effect.sync(() => {
      const interest = (mode: NetworkMessage.InterestMode, options: number, wire?: NetworkMessage.WireExpr): NetworkMessage.Interest => ({
        _tag: "Interest",
        id: 9,
        mode,
        options,
        wireExpr: wire,
        extensions: none
      })
      wrap(
        interest("final", 0),
        interest("current", 0x0f),
        interest("future", 0x02),
        interest("currentFuture", 0x02 | 0x10 | 0x20, { scope: 0, suffix: "chiral/**", senderMapping: false })
      )
      wrap(
        {
          _tag: "Request",
          requestId: 1,
          wireExpr: NetworkMessage.wireExpr("q/a"),
          extensions: [Extension.z64(0x34, 1)],
          body: { _tag: "Query", consolidation: 2, parameters: text("x=1"), extensions: [Extension.zbuf(0x43, bytes("00"))] }
        },
        { _tag: "Request", requestId: 2, wireExpr: NetworkMessage.wireExpr("q/a"), extensions: none, body: ZenohBody.put(text("v")) },
        {
          _tag: "Response",
          requestId: 1,
          wireExpr: NetworkMessage.wireExpr("q/a"),
          extensions: none,
          body: { _tag: "Reply", consolidation: undefined, extensions: none, body: ZenohBody.put(text("r")) }
        },
        {
          _tag: "Response",
          requestId: 1,
          wireExpr: NetworkMessage.wireExpr("q/a"),
          extensions: none,
          body: { _tag: "Err", encoding: { id: 1, schema: undefined }, extensions: none, payload: text("bad") }
        },
        { _tag: "ResponseFinal", requestId: 1, extensions: none },
        { _tag: "Oam", id: 1, extensions: [Extension.z64(0x21, 8)], body: bytes("0102") }
      )
    }))

  it.effect("pushSizeHint reads a PUT's total size from its first bytes", () =>
    Effect.sync(() => {
      const w = new ZBuf.ZWriter(16)
      NetworkMessage.encode(w, NetworkMessage.push("chiral/c2s", put(new Uint8Array(150_000), { timestamp: ts })))
      const whole = w.finish()
      assert.strictEqual(NetworkMessage.pushSizeHint(whole.subarray(0, 64)), whole.length)
      assert.strictEqual(NetworkMessage.pushSizeHint(whole.subarray(0, 5)), undefined)
      assert.strictEqual(NetworkMessage.pushSizeHint(bytes("3e001a")), undefined)
      // the payload (150 000 bytes) ends the message: it starts that far from the end
      assert.deepStrictEqual(NetworkMessage.pushLayout(whole.subarray(0, 64)), {
        size: whole.length,
        payloadAt: whole.length - 150_000
      })
    }))
})
