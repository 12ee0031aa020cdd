// The test projects. Vitest 5 no longer reads workspace files on its own:
// vitest.config.ts imports this list and hands it to `test.projects`.
import { defineProject } from "vitest/config"

// Tests import the TypeScript sources of sibling packages, not their dist/.
const source = { conditions: ["@chiral/source"] }

const setup = new URL("./vitest.setup.ts", import.meta.url).pathname

const project = (name: string, dir: string) =>
  defineProject({
    resolve: source,
    ssr: { resolve: { conditions: ["@chiral/source"], externalConditions: ["@chiral/source"] } },
    test: {
      name,
      root: dir,
      include: ["test/**/*.test.ts"],
      environment: "node",
      setupFiles: [setup],
      // Tests wait on conditions (a count reached, a state observed), never on
      // elapsed time; these limits only bound a hang, generously, so that a
      // busy 2-core CI machine cannot fail a test that is merely slow.
      testTimeout: 60_000,
      hookTimeout: 60_000
    }
  })

export default [
  project("protocol", "packages/protocol"),
  project("zenoh", "packages/zenoh"),
  project("core", "packages/core"),
  project("websocket", "packages/websocket"),
  project("zenoh-transport", "packages/zenoh-transport"),
  project("record", "packages/record"),
  project("cli", "apps/cli"),
  project("examples", "apps/examples")
]
