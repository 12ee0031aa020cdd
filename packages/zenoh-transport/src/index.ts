/**
 * @chiral/zenoh-transport: chiral over Zenoh 1.x (TCP port 7447, keys
 * `chiral/c2s` and `chiral/s2c`, as the references).
 *
 * `ZenohTransport.layerServer` and `layerClient` provide @chiral/core's
 * `ServerTransport` and `ClientTransport` on the `@chiral/zenoh` peer; the
 * client's action dispatcher runs on a worker thread with a Zenoh session of
 * its own (`ZenohDispatch`, implementing core's `OffThreadDispatch`).
 *
 * A package of its own rather than part of @chiral/zenoh: that package is a
 * Zenoh peer that knows nothing of chiral (its codec, sessions and pub/sub
 * are tested against zenoh-pico alone), and this one is where chiral's
 * frames meet Zenoh's keys, as @chiral/websocket is where they meet `ws`.
 */
export * as ZenohTransport from "./ZenohTransport.js"
