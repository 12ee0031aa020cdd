"""Adds the globalThis.__stamp(i) calls stage-hook.mjs reads to the built
dist/ of chiral serve's reply path, the ws library and the floor (run from the
repository root after `npx tsc -b`). Undo: `cp` back node_modules/ws/lib/
websocket.js from a fresh `npm ci`, and `rm -rf apps/*/dist packages/*/dist &&
npx tsc -b`."""
def patch(path, pairs):
    s = open(path).read()
    for old, new in pairs:
        assert old in s, (path, old)
        s = s.replace(old, new, 1)
    open(path, "w").write(s)

patch("packages/websocket/dist/WsConnection.js", [
    ("    message = (data, isBinary) => {\n", "    message = (data, isBinary) => {\n        globalThis.__stamp?.(1);\n"),
])
patch("packages/core/dist/ServerConnection.js", [
    ("    const decoded = decodeFrame(frame, limits);\n    if (Result.isFailure(decoded) || decoded.success.type !== \"obs_request\")\n        return false;\n",
     "    globalThis.__stamp?.(2);\n    const decoded = decodeFrame(frame, limits);\n    if (Result.isFailure(decoded) || decoded.success.type !== \"obs_request\")\n        return false;\n    globalThis.__stamp?.(3);\n"),
    ("    gate.served(leased.obs);\n    pending.requests++;", "    globalThis.__stamp?.(4);\n    gate.served(leased.obs);\n    pending.requests++;"),
    ("    const leased = observe(timestamp);\n", "    const leased = observe(timestamp);\n    globalThis.__stamp?.(6);\n"),
])
patch("node_modules/ws/lib/websocket.js", [
    ("  send(data, options, cb) {\n", "  send(data, options, cb) { globalThis.__stamp?.(5);\n"),
])
patch("apps/cli/dist/bench/FloorServer.js", [
    ('    ws.on("message", (data, isBinary) => {\n', '    ws.on("message", (data, isBinary) => { globalThis.__stamp?.(1);\n'),
])
