/**
 * `npm run example`: runs the example server and client as two processes
 * talking WebSocket over loopback, prints what both print (server lines
 * prefixed), and stops the server once the client is done.
 * `npm run example -- zenoh`: the same pair over Zenoh.
 */
import "./NodeVersion.js" // first: see there
import { fileURLToPath } from "node:url"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Deferred, Effect, Fiber, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"

/** `node <script in this folder> ...args`, with this process's Node. */
const node = (script: string, args: ReadonlyArray<string>) =>
  ChildProcess.make(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args])

const lines = <E>(bytes: Stream.Stream<Uint8Array, E>) => bytes.pipe(Stream.decodeText(), Stream.splitLines)

const zenoh = process.argv[2] === "zenoh"

const program = Effect.gen(function*() {
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner

  // The server picks a free port (0) and says which: "listening on ws://…" (or tcp/… on Zenoh).
  const server = yield* spawner.spawn(node(zenoh ? "./zenoh_server.js" : "./server.js", ["0", "127.0.0.1"]))
  const address = yield* Deferred.make<string>()
  const serverOutput = yield* lines(server.all).pipe(
    Stream.runForEach((line) => {
      const listening = /listening on (\S+)/.exec(line)
      if (listening !== null) Deferred.doneUnsafe(address, Effect.succeed(listening[1]!))
      return Console.log(`[server] ${line}`)
    }),
    Effect.forkScoped
  )
  const uri = yield* Deferred.await(address).pipe(
    Effect.raceFirst(Effect.andThen(Fiber.await(serverOutput), Effect.fail("the server exited before listening")))
  )

  const client = yield* spawner.spawn(node(zenoh ? "./zenoh_client.js" : "./client.js", [uri]))
  yield* lines(client.all).pipe(Stream.runForEach((line) => Console.log(line)))
  const code = yield* client.exitCode
  if (code !== 0) return yield* Effect.fail(`the client exited with code ${code}`)
  // Leaving the scope stops the server (SIGTERM).
}).pipe(Effect.scoped)

program.pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
