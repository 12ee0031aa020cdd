// The `chiral` executable (bin/chiral.js) under the Nodes a user may have: an
// unsupported one (< 22) says in one line which Node is needed and how to get
// it, and exits non-zero; a supported one runs with no message from V8 (whose
// flags differ between versions, see src/V8Flags.ts).
//
// The Node that runs the tests is one (npm's node@24). Older ones are looked
// for on PATH and in /usr/bin, /usr/local/bin (the system Node is 20 here);
// CHIRAL_TEST_NODES=/path/to/node:/other/node adds more (e.g. a Node 22).
// Like bench.test.ts, this runs the built dist/ (`tsc -b` first).
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { flagsFor, notGivenBy } from "../src/V8Flags.js"

const bin = fileURLToPath(new URL("../bin/chiral.js", import.meta.url))
const rootPackage = JSON.parse(
  fs.readFileSync(fileURLToPath(new URL("../../../package.json", import.meta.url)), "utf8")
) as { engines: { node: string } }

const realpath = (file: string): string | undefined => {
  try {
    return fs.realpathSync(file)
  } catch {
    return undefined
  }
}

interface NodeBinary {
  readonly path: string
  readonly major: number
}

/** Every other Node binary we can find, with its major version. */
const otherNodes = (): ReadonlyArray<NodeBinary> => {
  const listed = (process.env["CHIRAL_TEST_NODES"] ?? "").split(":").filter((p) => p !== "")
  const onPath = (process.env["PATH"] ?? "").split(path.delimiter).map((dir) => path.join(dir, "node"))
  const self = realpath(process.execPath)
  const seen = new Set<string>()
  const found: Array<NodeBinary> = []
  for (const candidate of [...listed, ...onPath, "/usr/bin/node", "/usr/local/bin/node"]) {
    const real = realpath(candidate)
    if (real === undefined || real === self || seen.has(real)) continue
    seen.add(real)
    const version = spawnSync(real, ["-p", "process.versions.node"], { encoding: "utf8", timeout: 60_000 })
    const major = Number.parseInt(version.stdout ?? "", 10)
    if (version.status === 0 && Number.isInteger(major)) found.push({ path: candidate, major })
  }
  return found
}

const nodes = otherNodes()
const unsupported = nodes.filter((n) => n.major < 22)
const supported = nodes.filter((n) => n.major >= 22)

const runBin = (node: string, args: ReadonlyArray<string>) =>
  spawnSync(node, [bin, ...args], { encoding: "utf8", timeout: 120_000 })

/** Starting Node and loading the CLI is slow on a loaded 2-core machine: a limit, not an expectation. */
const spawning = { timeout: 150_000 }

describe("bin/chiral.js", () => {
  it("requires the Node major that package.json's engines names", () => {
    const required = /var requiredMajor = (\d+)/.exec(fs.readFileSync(bin, "utf8"))?.[1]
    assert.strictEqual(`>=${required}`, rootPackage.engines.node)
  })

  it("runs on the test's Node with no message on stderr", spawning, () => {
    const result = runBin(process.execPath, ["--version"])
    assert.strictEqual(result.stderr, "")
    assert.strictEqual(result.stdout.trim(), "chiral v0.1.0")
    assert.strictEqual(result.status, 0)
  })

  it("a mistake on the command line: the error and where the flags are, on stderr, without the whole help", spawning, () => {
    const result = runBin(process.execPath, ["serve", "--port", "abc"])
    assert.strictEqual(result.status, 1)
    assert.strictEqual(result.stdout, "")
    assert.include(result.stderr, `Invalid value for flag --port: "abc"`)
    assert.include(result.stderr, "See `chiral serve --help` for its flags and examples.")
    assert.isBelow(result.stderr.split("\n").length, 10, result.stderr)
    // an abbreviation is suggested the flag it begins
    const abbreviated = runBin(process.execPath, ["serve", "--prot", "zenoh"])
    assert.strictEqual(abbreviated.status, 1)
    assert.match(abbreviated.stderr, /Did you mean this\?\s+--protocol\s/)
  })

  for (const node of unsupported) {
    it(`on Node ${node.major} (${node.path}): one line naming the Node it needs and how to get it, exit 1`, spawning, () => {
      const result = runBin(node.path, ["decode", "--help"])
      assert.strictEqual(result.status, 1)
      assert.strictEqual(result.stdout, "")
      const lines = result.stderr.split("\n")
      assert.deepStrictEqual(lines.slice(1), [""], `more than one line: ${result.stderr}`)
      assert.match(lines[0]!, new RegExp(`^chiral: needs Node\\.js 22 or newer, and this is Node\\.js v${node.major}\\.`))
      assert.include(lines[0]!, "`npx chiral`")
      assert.include(lines[0]!, "install Node.js 22 or newer")
      assert.notInclude(result.stderr, "unrecognized flag")
    })
  }
  if (unsupported.length === 0) {
    it.skip("on an unsupported Node: not tested, no Node < 22 found on this machine (see CHIRAL_TEST_NODES)", () => {})
  }

  for (const node of supported) {
    it(`on Node ${node.major} (${node.path}): runs with no message on stderr`, spawning, () => {
      const result = runBin(node.path, ["--version"])
      assert.strictEqual(result.stderr, "")
      assert.strictEqual(result.status, 0)
    })
  }
})

describe("V8Flags", () => {
  it("sets each group of flags only on the V8s that have it", () => {
    const external = ["--external-memory-accounted-in-global-limit"]
    const growthAndTiering = ["--heap-growing-percent=300", "--invocation-count-for-maglev=50", "--minimum-invocations-after-ic-update=60"]
    assert.deepStrictEqual(flagsFor("11.2.214.9"), [])
    assert.deepStrictEqual(flagsFor("11.3.244.8-node.38"), growthAndTiering) // Node 20
    assert.deepStrictEqual(flagsFor("12.4.254.21-node.57"), growthAndTiering) // Node 22
    assert.deepStrictEqual(flagsFor("12.9.202.28-node.14"), growthAndTiering) // Node 23
    assert.deepStrictEqual(flagsFor("13.6.233.17-node.53"), [...external, ...growthAndTiering]) // Node 24
    assert.deepStrictEqual(flagsFor("14.7.1"), [...external, ...growthAndTiering])
    assert.deepStrictEqual(flagsFor("14.8.0"), growthAndTiering) // accounting external memory is the default there, and no flag
    assert.deepStrictEqual(flagsFor("15.0.0"), [])
    assert.deepStrictEqual(flagsFor("not a version"), [])
  })

  it("leaves a flag the user gave node as they gave it, in either form", () => {
    const ours = ["--external-memory-accounted-in-global-limit", "--heap-growing-percent=300", "--invocation-count-for-maglev=50"]
    assert.deepStrictEqual(notGivenBy(ours, []), ours)
    assert.deepStrictEqual(notGivenBy(ours, ["--heap-growing-percent=100"]), [ours[0], ours[2]])
    assert.deepStrictEqual(notGivenBy(ours, ["--heap_growing_percent=100"]), [ours[0], ours[2]])
    assert.deepStrictEqual(notGivenBy(ours, ["--no-external-memory-accounted-in-global-limit", ""]), [ours[1], ours[2]])
    assert.deepStrictEqual(notGivenBy(ours, ["--no_external_memory_accounted_in_global_limit"]), [ours[1], ours[2]])
    assert.deepStrictEqual(notGivenBy(ours, ["--noexternal-memory-accounted-in-global-limit"]), [ours[1], ours[2]])
    assert.deepStrictEqual(notGivenBy(ours, ["--max-old-space-size=4096", "script.js", "heap-growing-percent"]), ours)
  })

  it("the chiral process does not override a flag given on node's command line", () => {
    const flagsOf = (nodeArgs: ReadonlyArray<string>) => {
      const script = `import(${JSON.stringify(new URL("../dist/V8Flags.js", import.meta.url).href)}).then((m) => console.log(JSON.stringify(m.flags)))`
      const result = spawnSync(process.execPath, [...nodeArgs, "--input-type=module", "-e", script], { encoding: "utf8" })
      assert.strictEqual(result.status, 0, result.stderr)
      return JSON.parse(result.stdout) as Array<string>
    }
    const mine = (flags: ReadonlyArray<string>) => flags.filter((f) => f.startsWith("--heap-growing-percent"))
    assert.deepStrictEqual(mine(flagsOf([])), mine(flagsFor(process.versions.v8)))
    assert.deepStrictEqual(mine(flagsOf(["--heap-growing-percent=100"])), [])
  })

  it("this Node knows every flag it is given (no \"unrecognized flag\" on stderr)", () => {
    const result = spawnSync(process.execPath, ["--v8-options"], { encoding: "utf8" })
    for (const flag of flagsFor(process.versions.v8)) {
      assert.include(result.stdout, `  ${flag.split("=")[0]} `, `${flag} is one of ${process.version}'s V8 options`)
    }
  })
})
