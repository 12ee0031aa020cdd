"""Patches the built dist (not the sources) to time each obs_request inside `chiral serve`, from ws's
message event to the reply's ws.send: decode, hand-off to the responder, the handler's observation,
encode, and the send itself; every 250 replies one line of p50/p90 (ms) on stderr. Also, for frames
over 40 bytes (the client's apply_action), the time from the message event to handled.
Usage: python3 instrument.py [--undo]   (rebuild with `npx tsc -b` after --undo, or touch the sources)"""
import sys, shutil, os
root = os.path.join(os.path.dirname(__file__), "../..")
ws = os.path.join(root, "packages/websocket/dist/WsConnection.js")
sc = os.path.join(root, "packages/core/dist/ServerConnection.js")
if "--undo" in sys.argv:
    for f in (ws, sc):
        if os.path.exists(f + ".orig"): shutil.move(f + ".orig", f)
    sys.exit()
def patch(f, pairs):
    if not os.path.exists(f + ".orig"): shutil.copy(f, f + ".orig")
    s = open(f + ".orig").read()
    for a, b in pairs:
        if a not in s:
            print("instrument: not found (skipped):", a[:60], file=sys.stderr); continue
        s = s.replace(a, b, 1)
    open(f, "w").write(s)
M = "const __m = (globalThis.__m ??= {});"
patch(sc, [
    ("const decoded = decodeFrame(frame, options.limits);", M + "__m.d0 = performance.now(); const decoded = decodeFrame(frame, options.limits); __m.d1 = performance.now();"),
    ("Effect.scopedWith((scope) => {", "Effect.scopedWith((scope) => { " + M + " __m.s = performance.now();"),
    ("const handleTimed = (frame) => Effect.andThen(handle(frame),", "const handleTimed = (frame) => Effect.andThen(((e) => { " + M + " __m.h = performance.now(); return e })(handle(frame)),"),
    ("const reading = connection.frames.pipe(Stream.runForEach((frame) => {", "const reading = connection.frames.pipe(Stream.runForEach((frame) => { " + M + " __m.r = performance.now();"),
    ("Effect.sync(() => void (handledAt = performance.now()))", """Effect.sync(() => { handledAt = performance.now(); const __m = globalThis.__m; if (__m?.inAct) { const a = (globalThis.__act ??= []); a.push([handledAt - __m.inAct, __m.d0 - __m.inAct, __m.d1 - __m.d0]); __m.inAct = 0;
      if (a.length === 250) { const q = (k, f) => a.map((x) => x[k]).sort((x, y) => x - y)[Math.floor(f * a.length)].toFixed(3); process.stderr.write(`[instrument] apply_action: ws message to handled ${q(0,.5)}/${q(0,.9)} | to decode ${q(1,.5)}/${q(1,.9)} | decode ${q(2,.5)}/${q(2,.9)}\\n`); a.length = 0 } } })"""),
    ("const answer = (request, connection) => {", "const answer = (request, connection) => { " + M + " __m.a = performance.now();"),
    ('(obs) => ({ type: "obs_response", obs })', '(obs) => { ' + M + ' __m.b = performance.now(); return ({ type: "obs_response", obs }) }'),
    ("const leased = observe(", M + " __m.s = __m.a = performance.now(); const leased = observe("),
    ('frame = encodeFrameParts({ type: "obs_response", obs: leased.obs });', '__m.b = performance.now(); __m.e0 = performance.now(); frame = encodeFrameParts({ type: "obs_response", obs: leased.obs }); __m.e1 = performance.now(); encodeFrameParts({ type: "obs_response", obs: leased.obs }); __m.e2 = performance.now();'),
    ("frame = encodeFrameParts(reply);", M + " __m.e0 = performance.now(); frame = encodeFrameParts(reply); __m.e1 = performance.now(); encodeFrameParts(reply); __m.e2 = performance.now();"),
])
patch(ws, [
    ("this.frames.push(bytes);", M + " if (bytes.byteLength > 40) __m.inAct = performance.now(); else __m.in = performance.now(); this.frames.push(bytes);"),
    ("ws.send(frame instanceof Uint8Array ? frame : frame[0] ?? new Uint8Array(0), { binary: true, compress: false, fin: true }, sent);",
     """const __t = performance.now(); const __sz = frame instanceof Uint8Array ? frame.byteLength : 0;
            ws.send(frame instanceof Uint8Array ? frame : frame[0] ?? new Uint8Array(0), { binary: true, compress: false, fin: true }, sent);
            const __m = globalThis.__m;
            if (__sz > 1000 && __m?.in) { const a = (globalThis.__lat ??= []);
              a.push([__m.r - __m.in, __m.d0 - __m.r, __m.d1 - __m.d0, __m.h - __m.d1, __m.s - __m.h, __m.a - __m.s, __m.b - __m.a, __m.e0 - __m.b, __m.e1 - __m.e0, __m.e2 - __m.e1, __t - __m.e2, performance.now() - __t, performance.now() - __m.in]); __m.in = 0;
              if (a.length === 250) { const q = (k, f) => a.map((x) => x[k]).sort((x, y) => x - y)[Math.floor(f * a.length)].toFixed(3);
                const names = ["toEach", "toDecode", "decode", "toH", "toScope", "toAnswer", "handler", "toEncode", "encode", "encodeAgain", "toSend", "send", "total"];
                process.stderr.write("[instrument] " + names.map((n, k) => `${n} ${q(k, .5)}/${q(k, .9)}`).join(" | ") + "\\n"); a.length = 0 } }"""),
])
