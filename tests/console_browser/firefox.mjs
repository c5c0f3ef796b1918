// The experiment console in headless Firefox (Debian's firefox-esr, driven by Puppeteer over
// WebDriver BiDi): the scenario of test_console.py. An admin logs in to /_seed/console and
// watches a scripted user go online -> busy -> unavailable -> offline; each change must show
// in the user's row within a second (Server-Sent Events), the timeline must keep a busy
// segment, and the explain panel must name the deciding rule. Screenshots go to
// $SEED_CONSOLE_ARTIFACTS. Started by run.sh (admin @exp:localhost, device timeout 3 s).
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import puppeteer from "puppeteer-core";

const HS = process.env.SEED_CONSOLE_HS ?? "http://127.0.0.1:8008";
const ART = process.env.SEED_CONSOLE_ARTIFACTS ?? "target/ci-artifacts/console/firefox";
const FIREFOX = process.env.SEED_BROWSER_FIREFOX ?? "/usr/bin/firefox-esr";
const PASSWORD = "console-pw-123";
const DEVICE_TIMEOUT_MS = 3000;
const ALICE_ROW = 'tr[data-user="@alice:localhost"]';

async function api(method, path, token, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(HS + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  return [resp.status, text ? JSON.parse(text) : {}];
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function register(name) {
  const [s1, first] = await api("POST", "/_matrix/client/v3/register", null, { username: name, password: PASSWORD });
  check(s1 === 401, `register ${name}: ${JSON.stringify(first)}`);
  const auth = { type: "m.login.dummy", session: first.session };
  const [s2, v] = await api("POST", "/_matrix/client/v3/register", null, { username: name, password: PASSWORD, auth });
  check(s2 === 200, `register ${name}: ${JSON.stringify(v)}`);
  return v;
}

const syncOnline = (u) => api("GET", "/_matrix/client/v3/sync?set_presence=online&timeout=0", u.access_token);

async function setPresence(user, presence, msg) {
  const path = `/_matrix/client/v3/presence/${encodeURIComponent(user.user_id)}/status`;
  const [status, v] = await api("PUT", path, user.access_token, { presence, status_msg: msg });
  check(status === 200, `set presence: ${JSON.stringify(v)}`);
}

/// Wait until the page says `fn(args)` is true; the error names `what`.
async function until(page, what, timeout, fn, ...args) {
  try {
    await page.waitForFunction(fn, { timeout, polling: 20 }, ...args);
  } catch (e) {
    throw new Error(`${what} not seen within ${timeout} ms (${e.message})`);
  }
}

const rowShows = (sel, presence) => {
  const tr = document.querySelector(sel);
  return tr?.dataset.presence === presence && tr.querySelector(".badge")?.textContent === presence;
};
const textIs = (sel, text) => document.querySelector(sel)?.textContent === text;
const hasSegment = (sel, presence) =>
  [...document.querySelectorAll(`${sel} svg rect[data-presence="${presence}"]`)].some(
    (r) => Number(r.getAttribute("width")) >= 3,
  );

async function main() {
  mkdirSync(ART, { recursive: true });
  await register("exp");
  const alice = await register("alice");
  const bob = await register("bob");
  await syncOnline(bob);

  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    protocol: "webDriverBiDi",
    headless: true,
  });
  try {
    console.log(`browser: ${await browser.version()}`);
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 640 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${HS}/_seed/console`);
    await page.type("#username", "exp");
    await page.type("#password", PASSWORD);
    await page.click("#login-button");
    await until(page, "the live badge", 10_000, textIs, "#live", "live");

    const step = async (presence, action) => {
      await action();
      const t0 = Date.now();
      await until(page, `alice ${presence}`, 1000, rowShows, ALICE_ROW, presence);
      console.log(`ok: alice ${presence} shown after ${Date.now() - t0} ms`);
    };

    await step("online", () => syncOnline(alice));
    await step("busy", () => setPresence(alice, "busy", "on a call"));
    await page.select("#window", "60000");
    await until(page, "a busy segment in alice's timeline", 1000, hasSegment, ALICE_ROW, "busy");
    await page.click(`${ALICE_ROW} button`);
    await until(page, "rule 4 in the explain panel", 1000, textIs, "#explain-rule", "4 · manual status");
    await until(page, "alice's status text", 1000, textIs, `${ALICE_ROW} .status`, "on a call");
    await page.screenshot({ path: join(ART, "console-busy.png"), fullPage: true });
    await step("unavailable", () => setPresence(alice, "unavailable", "back soon"));
    // Offline by the timer: the device's last sign of life was the PUT just made.
    const deadline = Date.now() + DEVICE_TIMEOUT_MS;
    await until(page, "alice offline", DEVICE_TIMEOUT_MS + 1000, rowShows, ALICE_ROW, "offline");
    check(Date.now() <= deadline + 1000, "offline shown more than a second after the timeout");
    console.log(`ok: alice offline shown ${Date.now() - deadline} ms after the device timeout`);
    await until(page, "rule 1 in the explain panel", 1000, textIs, "#explain-rule", "1 · liveness");
    await until(page, "the busy segment after busy ended", 1000, hasSegment, ALICE_ROW, "busy");
    const states = await page.$$eval(`${ALICE_ROW} svg rect`, (rs) => rs.map((r) => r.dataset.presence));
    check(states.slice(-4).join(",") === "online,busy,unavailable,offline", `timeline segments ${states}`);
    await page.screenshot({ path: join(ART, "console.png"), fullPage: true });
    check(errors.length === 0, `script errors on the page: ${errors.join("; ")}`);
  } finally {
    await browser.close();
  }
  console.log("PASS: the console works in Firefox");
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack ?? e}`);
  process.exit(1);
});
