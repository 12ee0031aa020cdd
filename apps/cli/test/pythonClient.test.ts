// The bench's Python-client comparison as printed: every round, the medians of
// both servers, chiral serve's difference and the target.
import { assert, describe, it } from "@effect/vitest"
import { format, type Round } from "../src/bench/PythonClient.js"

const run = (server: Round["server"], p50_ms: number, p99_ms: number): Round => ({
  server,
  latency: { n: 300, p50_ms, p90_ms: p50_ms + 0.5, p99_ms }
})

describe("PythonClient.format", () => {
  it("prints each round, both servers' medians of p50 and p99, and chiral serve's difference", () => {
    const text = format([
      run("Python reference", 1.5, 4),
      run("chiral serve", 1.4, 6),
      run("Python reference", 1.7, 5),
      run("chiral serve", 1.2, 3),
      run("Python reference", 1.6, 9),
      run("chiral serve", 1.3, 8)
    ])
    const lines = text.split("\n")
    assert.strictEqual(lines[0], "round 1  Python reference  get_obs p50 1.50  p90 2.00  p99 4.00 ms  (300 calls)")
    assert.strictEqual(lines[5], "round 3  chiral serve      get_obs p50 1.30  p90 1.80  p99 8.00 ms  (300 calls)")
    assert.include(text, "  Python reference      1.60    5.00 ms  (3 rounds)")
    assert.include(text, "  chiral serve          1.30    6.00 ms  (3 rounds)")
    assert.include(text, "chiral serve − Python reference: p50 −0.30 ms, p99 +1.00 ms (target: chiral serve's p50 ≤ the Python reference's ✓)")
  })

  it("says when the target is missed, and leaves failed rounds out of the medians", () => {
    const text = format([
      run("Python reference", 1.5, 4),
      run("chiral serve", 1.75, 6),
      { server: "Python reference", latency: "failed: no server" },
      run("chiral serve", 1.85, 7)
    ])
    assert.include(text, "round 2  Python reference  failed: no server")
    assert.include(text, "  Python reference      1.50    4.00 ms  (1 rounds)")
    assert.include(text, "p50 +0.30 ms, p99 +2.50 ms (target: chiral serve's p50 ≤ the Python reference's ✗)")
  })

  it("makes no comparison when a server has no successful round", () => {
    const text = format([run("Python reference", 1.5, 4), { server: "chiral serve", latency: "failed: exit 1" }])
    assert.include(text, "no comparison: a server has no successful round")
  })
})
