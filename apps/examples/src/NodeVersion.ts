/**
 * Imported first by every example, so that it runs before anything else is
 * evaluated. An example starts only where `import.meta.main` says it is the
 * program (Node.js 22.18 or newer, 24.2 in the 24 line); under an older Node,
 * Node 20 being the one many machines ship, they exited at once with status 0
 * and not a word. Such a Node is told so in one line, with the way that works
 * from the repository (`npx node …` runs npm's node@24 of the
 * devDependencies), as the `chiral` command does.
 */
const required = "22.18"

if (typeof import.meta.main !== "boolean") {
  const script = process.argv[1] ?? "apps/examples/dist/<example>.js"
  process.stderr.write(
    `chiral example: needs Node.js ${required} or newer, and this is Node.js ${process.version} (${process.execPath}). ` +
      `From the chiral-ts repository run \`npx node ${script}\` (npm runs the node@24 of the devDependencies), ` +
      `or install Node.js ${required} or newer.\n`
  )
  process.exit(1)
}

export {}
