// The page that the rollcall binary serves at `/`, in headless Chromium against a real server:
// two pages see each other, messages cross, a closed page leaves the other's list within 1 s, the
// leader's page closing hands the leadership over, the leader can end the session, and the page
// fits a phone-sized window.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { launchChromium } from "../support/browser.js";
import { JS_DIR, getJson, killAll, startRollcall } from "../support/servers.js";

/** @type {import("../support/servers.js").Rollcall} */
let server;
/** @type {Awaited<ReturnType<typeof launchChromium>>} */
let chromium;
/** Console errors and page errors of every page, reported when a test fails. */
const pageErrors = [];

before(async () => {
  [server, chromium] = await Promise.all([startRollcall({ name: "page" }), launchChromium()]);
});

after(async () => {
  await chromium?.close();
  await killAll();
});

const WAIT = 5000;

/**
 * A page in its own browser context (its own storage, like another person's browser).
 * @param {string} query
 * @param {{ width: number, height: number }} [viewport]
 */
async function open(query, viewport = { width: 1000, height: 720 }) {
  const context = await chromium.browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
  });
  await page.goto(`${server.http}/${query}`);
  return page;
}

/** @param {import("playwright-core").Page} page */
const memberNames = (page) => page.$$eval("[data-testid=members] li .name", (els) => els.map((e) => e.textContent));

/**
 * Waits until the page's member list has `n` entries.
 * @param {import("playwright-core").Page} page
 * @param {number} n
 * @param {number} [timeout]
 */
async function waitMembers(page, n, timeout = WAIT) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll("[data-testid=members] li").length === n, n, {
      timeout,
      polling: 10,
    });
  } catch (err) {
    throw new Error(
      `the list never had ${n} members within ${timeout} ms: ${JSON.stringify(await memberNames(page))}; ` +
        `state ${await page.textContent("[data-testid=state]")}; ${pageErrors.join(" | ")}`,
    );
  }
}

/** @param {import("playwright-core").Page} page */
async function waitConnected(page) {
  await page.waitForFunction(() => document.querySelector("[data-testid=state]")?.textContent === "connected", null, {
    timeout: WAIT,
    polling: 10,
  });
}

describe("the page", () => {
  test("GET / and /assets/: content types, the library's own modules, 404 for others", async () => {
    const index = await getJson(`${server.http}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
    assert.equal(index.text, readFileSync(path.join(JS_DIR, "page/index.html"), "utf8"), "GET / is the current page/index.html");
    // What the binary serves is the current source: every library module and the page's files.
    const files = [
      ...readdirSync(path.join(JS_DIR, "src"))
        .filter((f) => f.endsWith(".js"))
        .map((f) => ["src", f]),
      ["page", "page.js"],
      ["page", "page.css"],
    ];
    for (const [dir, file] of files) {
      const served = await getJson(`${server.http}/assets/${file}`);
      assert.equal(served.status, 200, `/assets/${file}`);
      const type = file.endsWith(".css") ? /^text\/css/ : /^text\/javascript/;
      assert.match(served.headers.get("content-type") ?? "", type, `content type of ${file}`);
      assert.equal(
        served.text,
        readFileSync(path.join(JS_DIR, dir, file), "utf8"),
        `/assets/${file} differs from ${dir}/${file}: the binary is older than the source (cargo build)`,
      );
    }
    const missing = await getJson(`${server.http}/assets/nothing.js`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body?.error?.code, "not_found");
  });

  test("the page runs under its Content-Security-Policy with nothing refused", async () => {
    const index = await getJson(`${server.http}/`);
    const csp = index.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    const before = pageErrors.length;
    const page = await open("?session=policy&name=Ada");
    await waitConnected(page);
    await waitMembers(page, 1);
    // The favicon, the style sheet, the import map and the modules all loaded.
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), "rgba(0, 0, 0, 0)");
    const favicon = await page.evaluate(async () => (await fetch("/assets/favicon.svg")).status);
    assert.equal(favicon, 200);
    const refused = pageErrors.slice(before).filter((e) => /Content Security Policy|Refused to/i.test(e));
    assert.deepEqual(refused, [], "the policy refused part of the page");
    await page.context().close();
  });

  test("two pages see each other and their messages; a closed page leaves within 1 s; the leader's page closing hands over", async () => {
    const ada = await open("?session=garden&name=Ada");
    await waitConnected(ada);
    await waitMembers(ada, 1);
    const grace = await open("?session=garden&name=Grace");
    await waitMembers(grace, 2);
    await waitMembers(ada, 2);
    assert.deepEqual(await memberNames(ada), ["Ada", "Grace"]);
    assert.deepEqual(await memberNames(grace), ["Ada", "Grace"]);
    assert.equal(await ada.textContent("[data-testid=state]"), "connected");

    // Leader and own entry are marked.
    for (const page of [ada, grace]) {
      assert.equal(await page.textContent("[data-testid=members] li[data-leader=true] .name"), "Ada");
    }
    assert.equal(await ada.textContent("[data-testid=members] li[data-you=true] .name"), "Ada");
    assert.equal(await grace.textContent("[data-testid=members] li[data-you=true] .name"), "Grace");
    assert.match((await ada.textContent("[data-testid=counts]")) ?? "", /2 connections · 2 users/);
    assert.equal(await ada.isVisible("text=End session"), true, "the leader sees End session");
    assert.equal(await grace.isVisible("text=End session"), false, "a non-leader does not");

    // Enter sends; the other page shows the message with the sender's name.
    await grace.fill("input[name=message]", "hello from Grace");
    await grace.press("input[name=message]", "Enter");
    await ada.waitForFunction(
      () => [...document.querySelectorAll("[data-testid=messages] li")].some((li) => li.textContent?.includes("hello from Grace")),
      null,
      { timeout: WAIT, polling: 10 },
    );
    const received = await ada.$$eval("[data-testid=messages] li", (lis) =>
      lis.map((li) => ({ from: li.querySelector(".from")?.textContent, text: li.querySelector(".text")?.textContent })),
    );
    assert.deepEqual(received, [{ from: "Grace", text: "hello from Grace" }]);
    // And the send button.
    await ada.fill("input[name=message]", "hi Grace");
    await ada.click("#message-form button");
    await grace.waitForFunction(
      () => [...document.querySelectorAll("[data-testid=messages] li")].some((li) => li.textContent?.includes("hi Grace")),
      null,
      { timeout: WAIT, polling: 10 },
    );
    assert.match((await grace.textContent("[data-testid=messages] li:not(.own)")) ?? "", /Ada.*hi Grace/);

    // A third page joins, then closes: gone from the others' lists within 1 s.
    const linus = await open("?session=garden&name=Linus");
    await waitMembers(linus, 3);
    await waitMembers(ada, 3);
    let t0 = Date.now();
    await linus.context().close();
    await Promise.all([waitMembers(ada, 2, 3000), waitMembers(grace, 2, 3000)]);
    const removed = Date.now() - t0;
    console.log(`a closed page left the other lists ${removed} ms after it closed`);
    assert.ok(removed <= 1000, `removed after ${removed} ms (bound 1 s)`);

    // The leader's page closes: Grace shows herself as leader.
    t0 = Date.now();
    await ada.context().close();
    await waitMembers(grace, 1);
    await grace.waitForSelector("[data-testid=members] li[data-you=true][data-leader=true]", { timeout: WAIT });
    console.log(`the leader's page closed; the other page showed itself as leader after ${Date.now() - t0} ms`);
    assert.equal(await grace.isVisible("text=End session"), true, "the new leader sees End session");
    assert.match((await grace.textContent("[data-testid=counts]")) ?? "", /1 connection · 1 user/);
    await grace.context().close();
    assert.deepEqual(pageErrors, []);
  });

  test("the form joins; the leader's End session ends it on every page", async () => {
    const host = await open("");
    await waitConnected(host);
    await host.fill("input[name=session]", "quiz-night");
    await host.fill("input[name=name]", "Host");
    await host.click("#join-form button[type=submit]");
    await waitMembers(host, 1);
    assert.match(host.url(), /session=quiz-night/);
    assert.match(host.url(), /name=Host/);
    const guest = await open("?session=quiz-night&name=Guest");
    await waitMembers(guest, 2);
    await host.click("text=End session");
    await guest.waitForSelector("#ended:not([hidden])", { timeout: WAIT });
    assert.match((await guest.textContent("#ended-text")) ?? "", /quiz-night was ended by Host/);
    await host.waitForSelector("#ended:not([hidden])", { timeout: WAIT });
    assert.match((await host.textContent("#ended-text")) ?? "", /ended by you/);
    await host.context().close();
    await guest.context().close();
    assert.deepEqual(pageErrors, []);
  });

  test("fits a phone-sized window: no sideways scrolling, one column", async () => {
    const phone = await open("?session=pocket&name=Ada%20Lovelace", { width: 375, height: 740 });
    await waitMembers(phone, 1);
    const layout = await phone.evaluate(() => {
      const grid = /** @type {HTMLElement} */ (document.querySelector(".grid"));
      return {
        scrollWidth: document.documentElement.scrollWidth,
        width: window.innerWidth,
        columns: getComputedStyle(grid).gridTemplateColumns.split(" ").length,
      };
    });
    assert.ok(layout.scrollWidth <= layout.width, `page is ${layout.scrollWidth} px wide in a ${layout.width} px window`);
    assert.equal(layout.columns, 1);
    await phone.context().close();
  });
});
