import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.ts"

export default defineConfig({
  test: {
    projects,
    // Two cores: keep the run lean and predictable.
    maxWorkers: 2,
    passWithNoTests: false
  }
})
