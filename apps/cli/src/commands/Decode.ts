import {
  type CameraFrame,
  decodeFrame,
  describeMessage,
  halfToNumber,
  type Message,
  type Observation,
  stringifyJson,
  type Tensor
} from "@chiral/protocol"
import { Console, Effect, FileSystem, type PlatformError, Result, Runtime, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"

/**
 * A command that failed for a reason the user should read. The handler has
 * already printed the one-line reason on stderr, so the runtime does not log it
 * again (no stack trace); the process still exits with code 1.
 */
export class CommandFailed extends Schema.TaggedError<CommandFailed>()("CommandFailed", {
  reason: Schema.String
}) {
  override readonly [Runtime.errorReported] = false
  override get message(): string {
    return this.reason
  }
}

/** Prints `chiral <command>: <reason>` as one line on stderr and fails. */
export const failWith = (command: string, reason: string) =>
  Console.error(`chiral ${command}: ${reason.replace(/\s*\n\s*/g, " ")}`).pipe(
    Effect.andThen(Effect.fail(new CommandFailed({ reason })))
  )

// ── human summary ─────────────────────────────────────────────────────────────

const value = (v: unknown): string => stringifyJson(v)

/** Smallest and largest element (NaN ignored); bool as false/true. */
const range = (t: Tensor): string => {
  const n = t.data.length
  if (n === 0) return "empty"
  if (t.dtype === "uint64" || t.dtype === "int64") {
    const data = t.data as BigInt64Array | BigUint64Array
    let lo = data[0]!
    let hi = data[0]!
    for (let i = 1; i < n; i++) {
      const x = data[i]!
      if (x < lo) lo = x
      if (x > hi) hi = x
    }
    return `min ${lo}  max ${hi}`
  }
  const data = t.data as Exclude<Tensor["data"], BigInt64Array | BigUint64Array>
  const half = t.dtype === "float16"
  let lo = Infinity
  let hi = -Infinity
  let nan = 0
  for (let i = 0; i < n; i++) {
    const x = half ? halfToNumber(data[i]!) : data[i]!
    if (x !== x) nan++
    else {
      if (x < lo) lo = x
      if (x > hi) hi = x
    }
  }
  if (nan === n) return "all NaN"
  const text = t.dtype === "bool" ? `min ${lo !== 0}  max ${hi !== 0}` : `min ${lo}  max ${hi}`
  return nan > 0 ? `${text}  (${nan} NaN)` : text
}

const tensorLine = (label: string, t: Tensor) => `${label}  ${t.dtype} [${t.shape.join(", ")}]  ${range(t)}`

const matrix = (values: Float64Array, n: number) => {
  const rows: Array<string> = []
  for (let r = 0; r < n; r++) rows.push(Array.from(values.subarray(r * n, r * n + n), String).join(", "))
  return `[${rows.join("; ")}]`
}

const cameraLines = (c: CameraFrame, i: number): Array<string> => [
  `  cameras[${i}] ${JSON.stringify(c.name)}  timestamp ${c.timestamp}`,
  `    intrinsics  ${matrix(c.intrinsics, 3)}`,
  `    extrinsics  ${matrix(c.extrinsics, 4)}`,
  `    ${tensorLine("image", c.image)}`,
  `    ${c.depth === null ? "depth  none" : tensorLine("depth", c.depth)}`
]

const observationLines = (obs: Observation): Array<string> => [
  `timestamp  ${obs.timestamp}`,
  `cameras  ${obs.cameras.length}`,
  ...obs.cameras.flatMap(cameraLines),
  `proprios  ${obs.proprios.length}`,
  ...obs.proprios.map((p, i) => `  ${tensorLine(`proprios[${i}] ${JSON.stringify(p.name)}`, p.data)}`),
  `extra  ${value(describeMessage({ type: "metadata_response", data: obs.extra }).data)}`
]

const plainValue = (m: Record<string, unknown>) => value(describeMessage({ type: "metadata_response", data: m }).data)

/** Type, header fields, and each tensor's dtype, shape, min and max. */
export const summarize = (message: Message, frame: Uint8Array): string => {
  const headerLen = frame.byteLength >= 4 ? new DataView(frame.buffer, frame.byteOffset).getUint32(0, true) : 0
  const lines = [
    `${message.type}  (${frame.byteLength} bytes: header ${headerLen}, payload ${frame.byteLength - 4 - headerLen})`
  ]
  switch (message.type) {
    case "metadata":
    case "reset":
    case "obs_request":
      break
    case "apply_action":
    case "action":
      lines.push(tensorLine("action", message.action), `obs_timestamps  ${plainValue(message.obsTimestamps)}`)
      break
    case "metadata_response":
      lines.push(`data  ${plainValue(message.data)}`)
      break
    case "obs_response":
      lines.push(...observationLines(message.obs))
      break
    case "reset_response":
      lines.push(...observationLines(message.obs), `info  ${plainValue(message.info)}`)
      break
    case "step_response":
      lines.push(
        ...observationLines(message.obs),
        `reward  ${message.reward}`,
        `terminated  ${message.terminated}`,
        `truncated  ${message.truncated}`,
        `info  ${plainValue(message.info)}`
      )
      break
  }
  return lines.join("\n")
}

/**
 * vectors.json's format: type, bytes, header_len, then the message description,
 * written by stringifyJson: NaN, +Infinity and -Infinity as the strings "NaN",
 * "Infinity", "-Infinity", -0 as -0.0, 64-bit integers exact.
 */
export const toJson = (message: Message, frame: Uint8Array): string => {
  const { type, ...rest } = describeMessage(message)
  const headerLen = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true)
  return stringifyJson({ type, bytes: frame.byteLength, header_len: headerLen, ...rest }, 1)
}

// ── command ───────────────────────────────────────────────────────────────────

const readProblem = (error: PlatformError.PlatformError): string => {
  const reason = error.reason
  if (reason._tag === "NotFound") return "no such file"
  if (reason._tag === "PermissionDenied") return "permission denied"
  if (reason._tag === "BadResource" || reason.description?.includes("EISDIR")) return "not a regular file"
  return error.message
}

export const decode = Command.make(
  "decode",
  {
    frame: Argument.File("frame").pipe(
      Argument.withDescription("A file holding exactly one chiral frame ([u32 LE header_len][msgpack header][payload])")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "Print the frame as JSON in the format of the shared vectors.json (tensors as {dtype, shape, data} row-major; NaN, Infinity, -Infinity as the strings \"NaN\", \"Infinity\", \"-Infinity\")"
      ),
      Flag.withDefault(false)
    )
  },
  Effect.fnUntraced(function*({ frame, json }) {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(frame).pipe(
      Effect.catch((error) => failWith("decode", `cannot read ${frame}: ${readProblem(error)}`))
    )
    const decoded = decodeFrame(bytes)
    if (Result.isFailure(decoded)) return yield* failWith("decode", `${frame}: ${decoded.failure.message}`)
    yield* Console.log(json ? toJson(decoded.success, bytes) : summarize(decoded.success, bytes))
  })
).pipe(
  Command.withDescription(
    "Decode one chiral wire frame from a file and show what it carries: the message type, its header fields, and each tensor's dtype, shape, min and max. A malformed frame is reported in one line naming the field at fault, with exit code 1."
  ),
  Command.withExamples([
    { command: "chiral decode obs_response.bin", description: "Summarize a captured frame" },
    { command: "chiral decode obs_response.bin --json", description: "Every value, as JSON (vectors.json format)" }
  ])
)
