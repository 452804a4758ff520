// @ts-check
/**
 * rollcall-client: the browser and Node client of the rollcall session engine.
 *
 * `RollcallClient` keeps one WebSocket to a rollcall server (or to the next of several), re-joins
 * every session after a reconnect, and keeps each session's member list from the server's
 * versions. See README.md for the API, the events and the reconnect policy.
 */
export { RollcallClient, Session } from "./client.js";
export { RollcallError } from "./errors.js";
export { reconnectDelay } from "./backoff.js";
