/**
 * The optional access token of a WebSocket server. A client presents it in
 * its URI (`ws://host:8765/?token=T`, which the reference Python and C++
 * clients can do, since they send the URI's path and query as is) or as an
 * `Authorization: Bearer T` header. A missing or wrong token is answered with
 * HTTP 401 before the WebSocket upgrade, so such a client never reaches the
 * PolicyServer.
 *
 * The comparison takes the same time whatever the given token is: both sides
 * are hashed to 32 bytes (SHA-256) and compared with `timingSafeEqual`, so
 * neither the token's length nor its longest matching prefix leaks through
 * the response time.
 */
import * as Crypto from "node:crypto"
import type * as Http from "node:http"

const digest = (text: string): Buffer => Crypto.createHash("sha256").update(text, "utf8").digest()

/** The token a request presents: the `token` query parameter, else an `Authorization: Bearer` header. */
export const presented = (request: Http.IncomingMessage): string | undefined => {
  const query = (request.url ?? "").indexOf("?")
  if (query >= 0) {
    const token = new URLSearchParams(request.url!.slice(query + 1)).get("token")
    if (token !== null) return token
  }
  const authorization = request.headers.authorization
  const bearer = authorization === undefined ? null : /^Bearer[ \t]+(\S+)\s*$/i.exec(authorization)
  return bearer === null ? undefined : bearer[1]
}

/** Why a request is refused ("missing token", "wrong token"), or undefined when it presents `expected`. */
export const checker = (expected: string): (request: Http.IncomingMessage) => string | undefined => {
  const want = digest(expected)
  return (request) => {
    const token = presented(request)
    if (token === undefined) return "missing token"
    return Crypto.timingSafeEqual(digest(token), want) ? undefined : "wrong token"
  }
}

/**
 * What a client refused with HTTP 401 is told, by whether its request target
 * (`path`: the URI's path and query) carried a token: a chiral server with a
 * token answers so a request without it, or with another.
 */
export const unauthorized = (path: string): string => {
  const query = path.indexOf("?")
  return query >= 0 && new URLSearchParams(path.slice(query + 1)).has("token")
    ? "the server refused the access token given (HTTP 401): check it against the robot's --token / CHIRAL_TOKEN"
    : "the server requires an access token (HTTP 401): add ?token=T to the URI, T the robot's token"
}

/**
 * Whether a connection failure's `detail` is `unauthorized`'s: the server
 * turns the token away, and will until one of the two tokens changes.
 */
export const isUnauthorized = (detail: string | undefined): boolean => detail?.includes("(HTTP 401)") === true

/** Where a request came from, as logs name a peer: `host:port`, an IPv6 host in brackets. */
export const peerOf = (request: Http.IncomingMessage | undefined): string => {
  const address = request?.socket.remoteAddress
  if (address === undefined) return "?"
  return `${address.includes(":") ? `[${address}]` : address}:${request!.socket.remotePort ?? "?"}`
}

/**
 * `ws`'s `verifyClient` for a server that requires a token (`refusal`, from
 * `checker`): a request that does not present it is answered HTTP 401 with
 * `WWW-Authenticate: Bearer` before the upgrade, and `warn`ed as
 * `chiral: refused <who> from <peer>: <why> (HTTP 401)`.
 */
export const verifyClient = (
  refusal: (request: Http.IncomingMessage) => string | undefined,
  who: string,
  warn: (line: string) => void
) =>
(
  info: { readonly req: Http.IncomingMessage },
  done: (ok: boolean, code?: number, message?: string, headers?: Http.OutgoingHttpHeaders) => void
): void => {
  const why = refusal(info.req)
  if (why === undefined) return done(true)
  warn(`chiral: refused ${who} from ${peerOf(info.req)}: ${why} (HTTP 401)`)
  done(false, 401, "Unauthorized", { "WWW-Authenticate": "Bearer" })
}

/**
 * `uri` as it may be shown in logs and errors: the value of every `token`
 * query parameter replaced by `***` (`ws://robot:8765/?token=***`), also in
 * a string that is not a valid URI.
 */
export const redact = (uri: string): string => uri.replace(/([?&]token=)[^&#]*/gi, "$1***")
