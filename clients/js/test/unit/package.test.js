// The package as an app sees it: importable by its name through `exports`, types built, no
// runtime dependencies. (`npm run test:unit` runs `tsc` first, which writes dist/.)
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));

test("imports by package name through exports", async () => {
  const lib = await import("rollcall-client");
  assert.equal(typeof lib.RollcallClient, "function");
  assert.equal(typeof lib.RollcallError, "function");
  const err = new lib.RollcallError("timeout", "late");
  assert.ok(err instanceof Error);
  assert.equal(err.code, "timeout");
  const view = await import("rollcall-client/view");
  assert.equal(typeof view.applyFrame, "function");
});

test("an ES module with types and no runtime dependencies", () => {
  assert.equal(pkg.name, "rollcall-client");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.peerDependencies, undefined);
  for (const entry of Object.values(pkg.exports)) {
    assert.ok(existsSync(path.join(root, entry.default)), entry.default);
    assert.ok(existsSync(path.join(root, entry.types)), `${entry.types} (npm run build)`);
  }
  const dts = readFileSync(path.join(root, "dist/index.d.ts"), "utf8");
  assert.match(dts, /RollcallClient/);
  assert.match(readFileSync(path.join(root, "dist/client.d.ts"), "utf8"), /ready\(\): Promise<void>/);
});

test("a RollcallClient without a WebSocket says what to pass", async () => {
  const { RollcallClient } = await import("rollcall-client");
  if (typeof globalThis.WebSocket === "undefined") {
    // Node 20: no global WebSocket.
    assert.throws(() => new RollcallClient({ url: "ws://127.0.0.1:1/ws" }), /options\.WebSocket/);
  }
  assert.throws(() => new RollcallClient({ url: "http://x/ws", WebSocket: class {} }), /not a ws:\/\//);
  assert.throws(() => new RollcallClient({ url: [] , WebSocket: class {} }), /empty/);
});
