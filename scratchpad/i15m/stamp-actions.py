# Stamps every action on its way through the built robot (dist/, WebSocket): the
# client's due time and send, ws's message event, the reader, the decode, NewestAction's
# slot, the gate, the handler. Patches dist/ in place: rebuild afterwards
# (rm -rf packages/*/dist apps/cli/dist && npx tsc -b). Then:
#   DUMP=d.json DUMPS=s.json node apps/cli/dist/main.js bench --json --action-hz 30
#   python3 scratchpad/i15m/stages.py d.json s.json
# Stamps per action in the built dist (restore with: rm -rf dist dirs; tsc -b)
N='Number(process.hrtime.bigint()) / 1e6'
def patch(p, pairs):
    s=open(p).read()
    for old,new in pairs:
        assert old in s, (p, old)
        s=s.replace(old,new,1)
    open(p,'w').write(s)
R='/work/main/'
patch(R+'apps/cli/dist/bench/Run.js',[("const report = (options, address, server, trips, stream, meter) => {\n","const report = (options, address, server, trips, stream, meter) => {\n if (process.env.DUMP) __fs.writeFileSync(process.env.DUMP, JSON.stringify({dues: meter.actionSendDues, sends: meter.actionSends, arrivals: stream.arrivals}));\n")])
s=open(R+'apps/cli/dist/bench/Run.js').read(); open(R+'apps/cli/dist/bench/Run.js','w').write("import * as __fs from 'node:fs';\n"+s)
patch(R+'packages/websocket/dist/WsConnection.js',[('ws.on("message", inbox.message);','ws.on("message", (d, b) => { globalThis.__msgAt = %s; return inbox.message(d, b) });'%N)])
patch(R+'apps/cli/dist/bench/Server.js',[("arrivals.push([Number(Tensor.toArray(action)[0] ?? 0), t]);","arrivals.push([Number(Tensor.toArray(action)[0] ?? 0), t]); (globalThis.__stamps ??= []).push([0, globalThis.__msgAt, t, globalThis.__offerAt, globalThis.__applyAt, globalThis.__admAt, globalThis.__handleAt, globalThis.__decodedAt]);"),
  ("const options = JSON.parse(","import * as __fs from 'node:fs';\nprocess.on('exit', () => { if (process.env.DUMPS) __fs.writeFileSync(process.env.DUMPS, JSON.stringify(globalThis.__stamps ?? [])) });\nconst options = JSON.parse(")])
patch(R+'packages/core/dist/NewestAction.js',[("const offer = (action) => Effect.sync(() => {","const offer = (action) => Effect.sync(() => { globalThis.__offerAt = %s;"%N),
  ("const applyWaiting = Semaphore.withPermit(lock)(Effect.suspend(() => {","const applyWaiting = Semaphore.withPermit(lock)(Effect.suspend(() => { globalThis.__applyAt = %s;"%N)])
patch(R+'packages/core/dist/ServerConnection.js',[("gate.whileApplying(responder.applyAction(message.action, { obsTimestamps: message.obsTimestamps, connection: connection.id }))","gate.whileApplying(Effect.suspend(() => { globalThis.__admAt = %s; return responder.applyAction(message.action, { obsTimestamps: message.obsTimestamps, connection: connection.id }) }))"%N),
  ("""    const handle = (frame) => {
        const decoded = decodeFrame(frame, options.limits);""","""    const handle = (frame) => {
        globalThis.__handleAt = %s;
        const decoded = decodeFrame(frame, options.limits);
        globalThis.__decodedAt = %s;"""%(N,N))])
print("instrumented")
