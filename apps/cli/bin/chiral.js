#!/usr/bin/env node
// The `chiral` command; the built CLI lives in dist/ (`npm install` builds it:
// the root `prepare` script).
//
// Which Node runs this depends on the user's PATH, and the CLI needs Node >= 22
// (the root package.json's "engines"). An older one is told so in one line,
// before anything else is loaded: this file keeps to syntax that old Nodes can
// parse, and loads the CLI with import() so that the check runs first (a static
// import would be evaluated before it).
var requiredMajor = 22
var major = Number(process.versions.node.split(".")[0])

if (major >= requiredMajor) {
  import("../dist/main.js")
} else {
  process.stderr.write(
    "chiral: needs Node.js " + requiredMajor + " or newer, and this is Node.js " + process.version +
      " (" + process.execPath + "). From the chiral-ts repository run `npx chiral` (npm runs it with the" +
      " node@24 of the devDependencies), or install Node.js " + requiredMajor + " or newer.\n"
  )
  process.exitCode = 1
}
