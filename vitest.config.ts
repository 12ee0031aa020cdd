import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.ts"

export default defineConfig({
  test: {
    projects,
    // Two cores: keep the run lean and predictable.
    maxWorkers: 2,
    // A process per test file: DispatchContract.stallContract stops its own
    // process (SIGSTOP) to stop a policy; in one shared process it would
    // stop every file running beside it.
    pool: "forks",
    passWithNoTests: false
  }
})
