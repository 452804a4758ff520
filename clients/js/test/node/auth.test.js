// Tokens against a real rollcall with --jwt-secret and --allow-anonymous false: a refused upgrade
// (HTTP 401) with a token function fetches a fresh token once and retries; otherwise the client
// closes with `unauthorized`. Both with the `ws` package (which reports the HTTP status) and with a
// WebSocket that hides it as browsers do (the client then asks the server over plain HTTP).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { RollcallError } from "../../src/index.js";
import { BrowserLikeWebSocket, closeAll, makeClient } from "../support/clients.js";
import { killAll, mintToken, nextEvent, startRollcall } from "../support/servers.js";

const SECRET = "js-client-test-secret";
const OTHER_SECRET = "rotated-secret";
/** @type {import("../support/servers.js").Rollcall} */
let server;

const now = () => Math.floor(Date.now() / 1000);
// The server allows the usual 60 s of clock skew: "expired" is more than that in the past.
const expired = (secret = SECRET, sub = "ada") => mintToken(secret, { sub, exp: now() - 600, name: "Ada" });
const fresh = (secret = SECRET, sub = "ada") => mintToken(secret, { sub, exp: now() + 3600, name: "Ada" });

before(async () => {
  server = await startRollcall({ name: "auth", args: ["--jwt-secret", SECRET, "--allow-anonymous", "false"] });
});

after(async () => {
  closeAll();
  await killAll();
});

/** A token function returning `tokens` in turn (the last one again when they run out). */
function sequence(tokens) {
  const fn = async () => {
    fn.calls += 1;
    return tokens[Math.min(fn.calls, tokens.length) - 1];
  };
  fn.calls = 0;
  return fn;
}

/**
 * @param {import("../../src/index.js").RollcallClient} client
 */
async function expectUnauthorized(client) {
  const errors = [];
  client.on("error", (e) => errors.push(e));
  await assert.rejects(client.ready(), (e) => {
    assert.ok(e instanceof RollcallError, String(e));
    assert.equal(e.code, "unauthorized");
    assert.match(e.message, /HTTP 401/);
    return true;
  });
  assert.equal(client.state, "closed");
  return errors;
}

for (const [label, WebSocketCtor] of [
  ["ws package (status visible)", undefined],
  ["browser-like WebSocket (status hidden, probed over HTTP)", BrowserLikeWebSocket],
]) {
  describe(`auth, ${label}`, () => {
    const ws = WebSocketCtor ? { WebSocket: WebSocketCtor } : {};

    test("an expired token from a token function is replaced by a fresh one", async () => {
      const token = sequence([await expired(), await fresh()]);
      const client = makeClient({ url: server.ws, token, ...ws });
      await client.ready();
      assert.equal(token.calls, 2);
      assert.equal(client.user, "ada");
      const session = await client.join("private-room");
      assert.equal(session.members[0].user, "ada");
      assert.equal(session.members[0].name, "Ada", "the token's name claim is the default display name");
    });

    test("an expired token string: closed, with error `unauthorized`", async () => {
      const client = makeClient({ url: server.ws, token: await expired(), ...ws });
      const errors = await expectUnauthorized(client);
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, "unauthorized");
      if (WebSocketCtor) assert.match(errors[0].message, /token_expired/, "the probe reads the server's reason");
    });

    test("a token function whose fresh token is refused too: one retry, then closed", async () => {
      const token = sequence([await expired()]);
      const client = makeClient({ url: server.ws, token, ...ws });
      await expectUnauthorized(client);
      assert.equal(token.calls, 2, "the function is asked once more after the refusal, not again");
    });

    test("no token where anonymous access is off: closed, with error `unauthorized`", async () => {
      const client = makeClient({ url: server.ws, ...ws });
      await expectUnauthorized(client);
    });
  });
}

describe("auth across reconnects", () => {
  test("the token is reused on reconnect; a refusal there (rotated secret) fetches a fresh one", async () => {
    const old = await startRollcall({ name: "old-secret", args: ["--jwt-secret", SECRET, "--allow-anonymous", "false"] });
    const rotated = await startRollcall({
      name: "new-secret",
      args: ["--jwt-secret", OTHER_SECRET, "--allow-anonymous", "false"],
    });
    let secret = SECRET;
    const token = Object.assign(
      async () => {
        token.calls += 1;
        return fresh(secret);
      },
      { calls: 0 },
    );
    const client = makeClient({ url: [old.ws, rotated.ws], token, minReconnectDelayMs: 10000 });
    const session = await client.join("rotating", { name: "Ada" });
    assert.equal(token.calls, 1);
    secret = OTHER_SECRET; // what the token service hands out from now on
    const rejoined = nextEvent(session, "change", {
      timeoutMs: 8000,
      message: "the session to be re-joined on the instance with the new secret",
      predicate: (s) => s.members.some((m) => m.connection === client.connectionId) && client.url === rotated.ws,
    });
    old.signal("SIGTERM"); // 1012: straight to the next URL, with the cached (now refused) token
    await rejoined;
    assert.equal(token.calls, 2, "called once more, after the refusal");
    assert.equal(client.state, "connected");
    assert.equal(client.user, "ada");
  });
});
