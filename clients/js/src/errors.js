// @ts-check
/**
 * The one error type of the library.
 *
 * `code` is either a code of the wire protocol (`invalid_session`, `not_member`, `not_leader`,
 * `session_ended`, `forbidden`, `rate_limited`, `unavailable`, …) or one of the client's own:
 * `timeout` (no reply within `requestTimeoutMs`), `disconnected` (the connection was cut before the
 * reply came), `unauthorized` (the server refused the connection), `closed` (the client was
 * closed) and `token_error` (the token function threw or returned no token).
 */
export class RollcallError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ session?: string }} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "RollcallError";
    /** @type {string} */
    this.code = code;
    /**
     * The session the error is about, when it is about one (a failed re-join, say).
     * @type {string | undefined}
     */
    this.session = details.session;
  }
}
