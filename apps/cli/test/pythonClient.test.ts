// The bench's Python-client comparison as printed: every round, the medians of
// both servers, chiral serve's difference and the target, from the servers'
// start and warmed.
import { assert, describe, it } from "@effect/vitest"
import { format, parseResult, type Phase, processCpu, type Round } from "../src/bench/PythonClient.js"

const run = (server: Round["server"], p50_ms: number, p99_ms: number, phase: Phase = "from start"): Round => ({
  server,
  phase,
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
    assert.strictEqual(lines[0], "round 1  Python reference  from start  get_obs p50 1.50  p90 2.00  p99 4.00 ms  (300 calls)")
    assert.strictEqual(lines[5], "round 3  chiral serve      from start  get_obs p50 1.30  p90 1.80  p99 8.00 ms  (300 calls)")
    assert.include(text, "  Python reference                1.60    5.00 ms  (3 rounds)")
    assert.include(text, "  chiral serve                    1.30    6.00 ms  (3 rounds)")
    assert.include(text, "from start: chiral serve − Python reference: p50 −0.30 ms, p99 +1.00 ms (target: chiral serve's p50 ≤ the Python reference's ✓)")
    // no warmed run, no warmed section
    assert.notInclude(text, "warmed")
  })

  it("says when the target is missed, and leaves failed rounds out of the medians", () => {
    const text = format([
      run("Python reference", 1.5, 4),
      run("chiral serve", 1.75, 6),
      { server: "Python reference", phase: "from start", latency: "failed: no server" },
      run("chiral serve", 1.85, 7)
    ])
    assert.include(text, "round 2  Python reference  from start  failed: no server")
    assert.include(text, "  Python reference                1.50    4.00 ms  (1 rounds)")
    assert.include(text, "p50 +0.30 ms, p99 +2.50 ms (target: chiral serve's p50 ≤ the Python reference's ✗)")
  })

  it("prints each server's CPU while the client ran, per round and its median, where it is known", () => {
    const text = format([
      { ...run("Python reference", 1.5, 4), cpu: { total: 6.2, main: 5.1 } },
      { ...run("chiral serve", 1.6, 5), cpu: { total: 12.4, main: 9.6 } },
      { ...run("Python reference", 1.5, 4), cpu: { total: 7.0, main: 5.5 } },
      { ...run("chiral serve", 1.6, 5), cpu: { total: 13.6, main: 11.0 } }
    ])
    const lines = text.split("\n")
    assert.strictEqual(lines[1], "round 1  chiral serve      from start  get_obs p50 1.60  p90 2.10  p99 5.00 ms  (300 calls)  server CPU 12 ms/s (main thread 10)")
    assert.include(text, "  Python reference                1.50    4.00 ms  (2 rounds)  server CPU 7 ms/s (main thread 5)")
    assert.include(text, "  chiral serve                    1.60    5.00 ms  (2 rounds)  server CPU 13 ms/s (main thread 10)")
  })

  it("makes no comparison when a server has no successful round", () => {
    const text = format([run("Python reference", 1.5, 4), { server: "chiral serve", phase: "from start", latency: "failed: exit 1" }])
    assert.include(text, "from start: no comparison: a server has no successful round")
  })

  it("numbers each server's runs by phase and compares the servers warmed apart from their start", () => {
    const text = format([
      run("Python reference", 1.0, 2),
      run("Python reference", 0.9, 1.5, "warmed"),
      run("chiral serve", 1.1, 3),
      run("chiral serve", 0.8, 1.2, "warmed"),
      run("Python reference", 1.2, 2),
      run("Python reference", 1.1, 1.5, "warmed"),
      run("chiral serve", 1.3, 3),
      run("chiral serve", 1.0, 1.2, "warmed")
    ])
    const lines = text.split("\n")
    assert.strictEqual(lines[3], "round 1  chiral serve      warmed      get_obs p50 0.80  p90 1.30  p99 1.20 ms  (300 calls)")
    assert.strictEqual(lines[4], "round 2  Python reference  from start  get_obs p50 1.20  p90 1.70  p99 2.00 ms  (300 calls)")
    assert.include(text, "median over rounds, from start    p50     p99")
    assert.include(text, "from start: chiral serve − Python reference: p50 +0.10 ms, p99 +1.00 ms (target: chiral serve's p50 ≤ the Python reference's ✗)")
    assert.include(text, "median over rounds, warmed        p50     p99\n  Python reference                1.00    1.50 ms  (2 rounds)\n  chiral serve                    0.90    1.20 ms  (2 rounds)")
    assert.include(text, "warmed: chiral serve − Python reference: p50 −0.10 ms, p99 −0.30 ms (target: chiral serve's p50 ≤ the Python reference's ✓)")
  })

  it("compares one phase while the other has no successful run", () => {
    const text = format([
      run("Python reference", 1.0, 2),
      { server: "Python reference", phase: "warmed", latency: "failed: the client printed nothing" },
      run("chiral serve", 0.9, 3),
      run("chiral serve", 0.8, 1.2, "warmed")
    ])
    assert.include(text, "round 1  Python reference  warmed      failed: the client printed nothing")
    assert.include(text, "from start: chiral serve − Python reference: p50 −0.10 ms, p99 +1.00 ms")
    assert.include(text, "warmed: no comparison: a server has no successful round")
  })
})

describe("PythonClient.format with the floor", () => {
  it("prints the floor's medians, its distance from the Python server and chiral serve's from it", () => {
    const text = format([
      run("Python reference", 1.2, 2.5),
      run("chiral serve", 1.5, 4),
      run("Node ws floor", 1.0, 3),
      run("Python reference", 1.4, 2.7),
      run("chiral serve", 1.3, 5),
      run("Node ws floor", 1.2, 2)
    ])
    const lines = text.split("\n")
    assert.strictEqual(lines[2], "round 1  Node ws floor     from start  get_obs p50 1.00  p90 1.50  p99 3.00 ms  (300 calls)")
    assert.include(
      text,
      "median over rounds, from start    p50     p99\n  Python reference                1.30    2.60 ms  (2 rounds)\n" +
        "  chiral serve                    1.40    4.50 ms  (2 rounds)\n  Node ws floor                   1.10    2.50 ms  (2 rounds)"
    )
    assert.include(
      text,
      "from start: the floor (a bare ws server sending chiral serve's reply) − Python reference: p50 −0.20 ms; " +
        "chiral serve − the floor: p50 +0.30 ms, p99 +2.00 ms"
    )
  })

  it("lists a floor that never ran with no figures, and compares nothing with it", () => {
    const text = format([
      run("Python reference", 1.2, 2.5),
      { server: "chiral serve", phase: "from start", latency: "failed: exit 1" },
      { server: "Node ws floor", phase: "from start", latency: "failed: no reply captured from chiral serve" }
    ])
    assert.include(text, "round 1  Node ws floor     from start  failed: no reply captured from chiral serve")
    assert.include(text, "  Node ws floor                      —       — ms  (0 rounds)")
    assert.notInclude(text, "the floor (a bare ws server")
  })
})

describe("PythonClient.parseResult", () => {
  it("takes the client's result line, after anything it printed to stderr before it", () => {
    const output = "chiral: waiting for server at ws://127.0.0.1:1 …\n{\"n\": 300, \"p50_ms\": 1.1, \"p90_ms\": 1.4, \"p99_ms\": 2.5}\n"
    assert.deepStrictEqual(parseResult(output), { n: 300, p50_ms: 1.1, p90_ms: 1.4, p99_ms: 2.5 })
  })

  it("says why when the client printed no result: its last line, or that it printed nothing", () => {
    assert.strictEqual(
      parseResult("Traceback (most recent call last):\n  File \"x.py\"\nConnectionRefusedError: [Errno 111]\n"),
      "the client printed no result; its last line: ConnectionRefusedError: [Errno 111]"
    )
    // JSON that is not a result does not count as one
    assert.strictEqual(parseResult("null\n3\n"), "the client printed no result; its last line: 3")
    assert.strictEqual(parseResult(""), "the client printed nothing")
  })
})

describe("PythonClient.processCpu", () => {
  it.skipIf(process.platform !== "linux")("counts a process's CPU time in ms, its main thread's apart, as it runs", () => {
    const before = processCpu(process.pid)
    assert.isDefined(before)
    let after = before!
    // Runs on this thread until the kernel has counted 50 ms more of it (however long that takes).
    while (after.main < before!.main + 50) {
      const until = performance.now() + 5
      while (performance.now() < until);
      after = processCpu(process.pid)!
    }
    assert.isAtLeast(after.total - before!.total, after.main - before!.main)
    assert.strictEqual(processCpu(-1), undefined)
  })
})
