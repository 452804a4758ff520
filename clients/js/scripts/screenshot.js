// Takes docs/page.png (the README's picture): two members in one session, seen by the first one.
// Needs the rollcall binary (ROLLCALL_BIN, default ../../target/debug/rollcall) and Chromium.
//   node scripts/screenshot.js [out.png] [--phone]
import path from "node:path";

import { launchChromium } from "../test/support/browser.js";
import { JS_DIR, killAll, startRollcall } from "../test/support/servers.js";

const args = process.argv.slice(2);
const phone = args.includes("--phone");
const out = path.resolve(args.find((a) => !a.startsWith("--")) ?? path.join(JS_DIR, "../../docs/page.png"));
const viewport = phone ? { width: 390, height: 780 } : { width: 1040, height: 700 };

const server = await startRollcall({ name: "screenshot" });
const chromium = await launchChromium();
try {
  const open = async (query) => {
    const context = await chromium.browser.newContext({ viewport, deviceScaleFactor: phone ? 2 : 1 });
    const page = await context.newPage();
    await page.goto(`${server.http}/${query}`);
    return page;
  };
  const members = (n) => (page) =>
    page.waitForFunction((n) => document.querySelectorAll("[data-testid=members] li").length === n, n);
  const ada = await open("?session=board-7&name=Ada%20Lovelace");
  await members(1)(ada);
  const grace = await open("?session=board-7&name=Grace%20Hopper");
  await Promise.all([members(2)(ada), members(2)(grace)]);
  await grace.fill("input[name=message]", "Hi Ada! I'm on the wall now.");
  await grace.press("input[name=message]", "Enter");
  await ada.waitForFunction(() => document.querySelectorAll("[data-testid=messages] li").length === 1);
  await ada.fill("input[name=message]", "Great, pick a problem and I'll set it on the board.");
  await ada.press("input[name=message]", "Enter");
  await grace.waitForFunction(() => document.querySelectorAll("[data-testid=messages] li").length === 2);
  await ada.waitForFunction(() => document.querySelectorAll("[data-testid=messages] li").length === 2);
  await ada.fill("input[name=message]", "");
  await ada.evaluate(() => /** @type {HTMLElement} */ (document.activeElement)?.blur());
  await ada.screenshot({ path: out, fullPage: phone });
  console.log(`wrote ${out}`);
} finally {
  await chromium.close();
  await killAll();
}
