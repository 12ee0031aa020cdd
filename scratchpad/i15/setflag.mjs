import * as V8 from "node:v8"
for (const f of (process.env.SETFLAGS ?? "").split(" ").filter(Boolean)) V8.setFlagsFromString(f)
