import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.ts"

export default defineConfig({
  test: {
    projects,
    // Two cores: keep the run lean and predictable.
    maxWorkers: 2,
    // A process per test file (with the default `isolate: true`; keep it):
    // DispatchContract.stallContract stops its own process (SIGSTOP) to stop
    // a policy, which in one shared process would stop every file running
    // beside it, and the warm-up tests (@chiral/testing/YoungGeneration) need
    // a thread whose young generation no earlier file warmed.
    pool: "forks",
    passWithNoTests: false
  }
})
