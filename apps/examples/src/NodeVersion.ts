/**
 * Imported first by every example, so that it runs before anything else is
 * evaluated: the examples need Node.js 22 or newer (the root package.json's
 * "engines"), and under Node 20, the one many machines ship, they exited at
 * once with status 0 and not a word. An older Node is told so in one line,
 * with the way that works from the repository (`npx node …` runs npm's
 * node@24 of the devDependencies), as the `chiral` command does.
 */
const requiredMajor = 22
const major = Number(process.versions.node.split(".")[0])

if (major < requiredMajor) {
  const script = process.argv[1] ?? "apps/examples/dist/<example>.js"
  process.stderr.write(
    `chiral example: needs Node.js ${requiredMajor} or newer, and this is Node.js ${process.version} (${process.execPath}). ` +
      `From the chiral-ts repository run \`npx node ${script}\` (npm runs the node@24 of the devDependencies), ` +
      `or install Node.js ${requiredMajor} or newer.\n`
  )
  process.exit(1)
}

export {}
