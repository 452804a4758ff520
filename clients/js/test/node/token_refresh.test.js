// Token refresh against a real rollcall (--jwt-secret, --jwt-leeway-secs 0): with a token function,
// the client answers `token_expiring` with `refresh` by itself and the connection outlives its
// first token; when the refresh is refused, the server closes with 4003 at `exp`, and the client
// fetches a fresh token, reconnects and re-joins (a close with 4003 ends the memberships at once). Every wait is bounded.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { closeAll, makeClient } from "../support/clients.js";
import { killAll, mintToken, nextEvent, startRollcall, waitFor } from "../support/servers.js";

const SECRET = "js-refresh-test-secret";
/** @type {import("../support/servers.js").Rollcall} */
let server;

const now = () => Math.floor(Date.now() / 1000);
const token = (sub, secs) => mintToken(SECRET, { sub, exp: now() + secs, name: sub });

before(async () => {
  server = await startRollcall({
    name: "refresh",
    args: ["--jwt-secret", SECRET, "--jwt-leeway-secs", "0", "--allow-anonymous", "false"],
  });
});

after(async () => {
  closeAll();
  await killAll();
});

/** A token function handing out `makers` in turn (the last one again when they run out). */
function tokens(makers) {
  const fn = async () => {
    fn.calls += 1;
    return makers[Math.min(fn.calls, makers.length) - 1]();
  };
  fn.calls = 0;
  return fn;
}

describe("token refresh", () => {
  test("token_expiring is answered with refresh: the connection outlives its first token", async () => {
    const firstExp = now() + 3;
    const fn = tokens([() => mintToken(SECRET, { sub: "ada", exp: firstExp }), () => token("ada", 3600)]);
    const client = makeClient({ url: server.ws, token: fn });
    const states = [];
    client.on("state", (s) => states.push(s));
    const session = await client.join("refreshing");
    const connection = client.connectionId;
    // Less than 30 s left: `token_expiring` comes at once and the client refreshes by itself.
    await waitFor(() => fn.calls === 2, { timeoutMs: 5000, message: "the token function to be asked again" });
    await waitFor(() => Date.now() > firstExp * 1000 + 1500, { timeoutMs: 6000, message: "the first exp to pass" });
    assert.equal(client.state, "connected");
    assert.ok(!states.includes("disconnected"), `no disconnection: ${states}`);
    assert.equal(client.connectionId, connection);
    assert.equal(session.members.length, 1);
    await session.publish({ still: "here" });
  });

  test("a refused refresh ends in 4003 at exp; the client fetches a fresh token and re-joins", async () => {
    const exp = now() + 2;
    const fn = tokens([
      () => mintToken(SECRET, { sub: "bea", exp }),
      () => token("mallory", 3600), // another user: the server refuses the refresh
      () => token("bea", 3600),
    ]);
    const client = makeClient({ url: server.ws, token: fn, minReconnectDelayMs: 50, maxReconnectDelayMs: 200 });
    const errors = [];
    client.on("error", (e) => errors.push(e));
    const session = await client.join("expiring");
    const connection = client.connectionId;
    const disconnected = nextEvent(client, "state", {
      timeoutMs: 6000,
      message: "the close at exp",
      predicate: (s) => s === "disconnected",
    });
    await disconnected;
    assert.ok(Date.now() >= exp * 1000, "not closed before exp");
    assert.ok(errors.some((e) => e.code === "forbidden"), `the refused refresh is reported: ${errors.map(String)}`);
    // A close with 4003 ends the memberships at once, so the client comes back as a fresh
    // connection (a new id from welcome), not a resumed one.
    await waitFor(() => client.state === "connected" && fn.calls === 3 && client.connectionId !== connection, {
      timeoutMs: 5000,
      message: "a reconnect with the fresh token, as a new connection",
    });
    assert.equal(client.user, "bea");
    await waitFor(() => session.members.some((m) => m.connection === client.connectionId), {
      timeoutMs: 5000,
      message: "the member back in its session",
    });
  });
});
