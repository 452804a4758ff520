// Unit tests of the reconnect delay (full jitter) and the event emitter.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { reconnectDelay } from "../../src/backoff.js";
import { Emitter } from "../../src/emitter.js";

describe("reconnectDelay", () => {
  test("the n-th retry waits within [min, min(max, min·2ⁿ)]", () => {
    for (let n = 1; n <= 12; n++) {
      const cap = Math.min(20000, 500 * 2 ** n);
      assert.equal(reconnectDelay(n, 500, 20000, () => 0), 500, `retry ${n}, random 0`);
      assert.equal(reconnectDelay(n, 500, 20000, () => 0.999999), Math.floor(0.999999 * cap), `retry ${n}, random ~1`);
      for (let i = 0; i < 200; i++) {
        const d = reconnectDelay(n, 500, 20000);
        assert.ok(d >= 500 && d <= cap, `retry ${n}: ${d} outside [500, ${cap}]`);
      }
    }
  });

  test("the cap is the maximum, however many retries", () => {
    assert.equal(reconnectDelay(100, 500, 20000, () => 0.5), 10000);
    assert.equal(reconnectDelay(100000, 500, 20000, () => 0.5), 10000);
  });

  test("spreads retries (jitter): not all clients wait the same", () => {
    const delays = new Set(Array.from({ length: 50 }, () => reconnectDelay(5, 500, 20000)));
    assert.ok(delays.size > 10, `only ${delays.size} distinct delays`);
  });
});

describe("Emitter", () => {
  test("on returns an unsubscribe function", () => {
    const e = new Emitter();
    const seen = [];
    const off = e.on("x", (v) => seen.push(v));
    e.emit("x", 1);
    off();
    off();
    e.emit("x", 2);
    assert.deepEqual(seen, [1]);
    assert.equal(e.listenerCount("x"), 0);
  });

  test("the same function twice is two listeners, each removed by its own function", () => {
    const e = new Emitter();
    let n = 0;
    const f = () => n++;
    const off1 = e.on("x", f);
    e.on("x", f);
    e.emit("x");
    off1();
    e.emit("x");
    assert.equal(n, 3);
  });

  test("once runs once", () => {
    const e = new Emitter();
    let n = 0;
    e.once("x", () => n++);
    e.emit("x");
    e.emit("x");
    assert.equal(n, 1);
  });

  test("a listener that throws does not stop the others; its error is reported", () => {
    const reported = [];
    const e = new Emitter((err) => reported.push(err));
    const seen = [];
    e.on("x", () => {
      throw new Error("boom");
    });
    e.on("x", () => seen.push("second"));
    e.emit("x");
    assert.deepEqual(seen, ["second"]);
    assert.equal(reported.length, 1);
    assert.equal(reported[0].message, "boom");
  });
});
