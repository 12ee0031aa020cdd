import { assert, describe, it } from "@effect/vitest"
import { fitReason, isSendableCode, maxReasonBytes } from "../src/CloseFrame.js"

const bytes = (text: string) => Buffer.byteLength(text)
/** Strict UTF-8 decoding: throws on bytes that are not valid UTF-8 (a character cut in two). */
const strict = new TextDecoder("utf-8", { fatal: true })

describe("CloseFrame", () => {
  it("a reason that fits is sent whole", () => {
    assert.strictEqual(fitReason("chiral: reset failed: e-stop pressed"), "chiral: reset failed: e-stop pressed")
    const exactly = "é".repeat(maxReasonBytes >> 1) + "x"
    assert.strictEqual(bytes(exactly), maxReasonBytes)
    assert.strictEqual(fitReason(exactly), exactly)
  })

  it("a longer reason is cut at a character boundary to at most 123 bytes of UTF-8, ending in …", () => {
    // Every alignment of 2-, 3- and 4-byte characters (a surrogate pair in
    // UTF-16) against the 123-byte limit.
    for (const wide of ["é", "€", "😀", "ß€😀"]) {
      for (let pad = 0; pad < 8; pad++) {
        const reason = `chiral: reset failed: ${"x".repeat(pad)}${wide.repeat(60)}`
        const fitted = fitReason(reason)
        const encoded = Buffer.from(fitted)
        assert.isAtMost(encoded.byteLength, maxReasonBytes, `${wide} after ${pad}`)
        // nothing was lost that fitted: one more character would not
        assert.isAbove(encoded.byteLength + 4, maxReasonBytes, `${wide} after ${pad}`)
        assert.isTrue(fitted.endsWith("…"))
        const kept = fitted.slice(0, -1)
        assert.isTrue(reason.startsWith(kept))
        assert.strictEqual(strict.decode(encoded), fitted)
        // no lone half of a surrogate pair
        assert.isFalse(/[\uD800-\uDBFF]$/.test(kept), `${wide} after ${pad}`)
      }
    }
  })

  it("close codes an endpoint may send", () => {
    for (const code of [1000, 1001, 1003, 1007, 1008, 1011, 1013, 1014, 3000, 4999]) assert.isTrue(isSendableCode(code), `${code}`)
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1011.5]) assert.isFalse(isSendableCode(code), `${code}`)
  })
})
