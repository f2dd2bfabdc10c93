// The chatroom's web page in a real browser against a real cluster: two people in headless
// Chromium (alice, bob) and the terminal client (chatroom-client, "robot") talk in one room.
//
//   npm run test:browser     (needs the built binaries and /usr/bin/chromium; see README.md)
//
// Screenshots go to $OXWORLD_SCREENSHOTS, else net/ts/test-output/screenshots.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { launchBrowser } from "./browser.mjs";
import { binary, startCluster } from "./cluster.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const shotsDir = resolve(process.env.OXWORLD_SCREENSHOTS || join(here, "..", "..", "test-output", "screenshots"));
const WAIT = 20_000;

/** The terminal client as a child process: type lines, wait for output lines. */
function startBot(config) {
  const child = spawn(binary("chatroom-client"), ["--config", config], { stdio: ["pipe", "pipe", "pipe"] });
  const lines = [];
  const waiters = new Set();
  let stderr = "";
  let buf = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters) w();
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (c) => (stderr += c));
  const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  child.once("exit", () => {
    for (const w of waiters) w();
  });
  // The index of the first line not matched yet: each expectation looks at later lines only.
  let cursor = 0;
  return {
    lines,
    type(line) {
      child.stdin.write(`${line}\n`);
    },
    /** Waits for a line (after the last one matched) containing `want`; returns it. */
    expect(want, timeoutMs = WAIT) {
      return new Promise((resolveLine, reject) => {
        const check = () => {
          const i = lines.findIndex((l, k) => k >= cursor && l.includes(want));
          if (i >= 0) {
            cursor = i + 1;
            done();
            resolveLine(lines[i]);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`the bot exited (${child.exitCode ?? child.signalCode}) before printing ${JSON.stringify(want)}; it printed:\n${lines.join("\n")}\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`the bot printed no line with ${JSON.stringify(want)} within ${timeoutMs} ms; it printed:\n${lines.join("\n")}\n${stderr}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    /** Ends the client: end of input (its /quit), then SIGKILL if it lingers. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end();
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Opens the chat page in a fresh browser context; collects the page's errors. */
async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1120, height: 700 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page, problems };
}

const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

/** Creates the account `user` on the page (which signs in at once) and waits for the chat view. */
async function register(page, user, password) {
  await page.locator('[data-testid="connection-state"][data-state="open"]').waitFor();
  await byId(page, "username").fill(user);
  await byId(page, "password").fill(password);
  await byId(page, "register-button").click();
  await byId(page, "chat-view").waitFor({ state: "visible" });
  assert.equal(await byId(page, "me-name").textContent(), user);
}

async function currentRoom(page, room) {
  await page.locator(`[data-testid="current-room"]:text-is("${room}")`).waitFor();
}

/** Types `text` in the message box and presses Enter; `kept`: a refused line stays in the box to be fixed. */
async function say(page, text, { kept = false } = {}) {
  const input = byId(page, "message-input");
  await input.fill(text);
  await input.press("Enter");
  assert.equal(await input.inputValue(), kept ? text : "", kept ? "a refused line stays in the box" : "the message box is cleared after sending");
}

/** Waits for the chat line `text` from `name` in the page's log. */
async function seesChat(page, name, text) {
  await page.locator(`[data-testid="chat-line"][data-name="${name}"]`, { hasText: text }).first().waitFor();
}

test("chatroom page: two browsers and the terminal client chat in one room", { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster({ gameDir: "demo/chatroom" });
  t.after(() => cluster.stop());
  const browser = await launchBrowser();
  t.after(() => browser.close());

  const a = await openPage(browser, cluster.httpUrl);
  const b = await openPage(browser, cluster.httpUrl);
  t.after(() => a.context.close());
  t.after(() => b.context.close());

  // The page loads its key from the gate and connects; the sign-in form waits for the user.
  await byId(a.page, "login-view").waitFor({ state: "visible" });
  assert.equal(await byId(a.page, "chat-view").isVisible(), false);

  // A wrong password is refused in words, on the form.
  await a.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor();
  await byId(a.page, "username").fill("nobody");
  await byId(a.page, "password").fill("nope");
  await byId(a.page, "login-button").click();
  await a.page.locator('[data-testid="login-message"][data-kind="error"]', { hasText: "wrong user name or password" }).waitFor();

  await register(a.page, "alice", "alice-pw-1");
  await register(b.page, "bob", "bob-pw-2");
  await currentRoom(a.page, "1");

  // alice moves with the typed command, bob with the room field and its button.
  await say(a.page, "/join blue");
  await currentRoom(a.page, "blue");
  await byId(b.page, "join-room").fill("blue");
  await byId(b.page, "join-button").click();
  await currentRoom(b.page, "blue");
  // alice sees bob arrive.
  await a.page.locator('[data-testid="event-line"][data-kind="arrive"][data-name="bob"][data-room="blue"]').waitFor();

  // The terminal client joins the same room.
  const bot = startBot(cluster.config);
  t.after(() => bot.stop());
  await bot.expect("/register <user> <password> to make an account");
  bot.type("/register robot robot-pw-3");
  await bot.expect("* registered; now log in");
  bot.type("/login robot robot-pw-3");
  await bot.expect("* welcome robot");
  bot.type("/join blue");
  await bot.expect("* you are in chat room blue");
  await a.page.locator('[data-testid="event-line"][data-kind="arrive"][data-name="robot"][data-room="blue"]').waitFor();
  await b.page.locator('[data-testid="event-line"][data-kind="arrive"][data-name="robot"][data-room="blue"]').waitFor();

  // alice speaks: bob and the bot hear it.
  await say(a.page, "hi everyone, alice here");
  await seesChat(b.page, "alice", "hi everyone, alice here");
  await seesChat(a.page, "alice", "hi everyone, alice here");
  await bot.expect("<alice> hi everyone, alice here");

  // bob answers, with text that must stay text.
  const tricky = "hello alice <b>not bold</b> & <img src=x onerror=alert(1)>";
  await say(b.page, tricky);
  await seesChat(a.page, "bob", tricky);
  await bot.expect(`<bob> ${tricky}`);
  const shown = a.page.locator('[data-testid="chat-line"][data-name="bob"] .text').last();
  assert.equal(await shown.textContent(), tricky);
  assert.equal(await shown.locator("b, img").count(), 0, "user text is never parsed as HTML");

  // The bot speaks: both pages see it.
  bot.type("beep boop, robot reporting for duty");
  await seesChat(a.page, "robot", "beep boop, robot reporting for duty");
  await seesChat(b.page, "robot", "beep boop, robot reporting for duty");

  // The room list shows blue with its three members (refreshed on arrivals and every few seconds).
  for (const p of [a.page, b.page]) {
    await p.locator('[data-testid="room"][data-room="blue"][data-count="3"]').waitFor();
    await p.locator('[data-testid="room-members"]:text-is("3 people here")').waitFor();
  }
  // The bot sees the same list.
  bot.type("/rooms");
  await bot.expect("* rooms: blue (3)");

  // A bad room name is refused in the log.
  await say(a.page, "/join no spaces", { kept: true });
  await a.page.locator('[data-testid="notice-line"][data-kind="error"]', { hasText: "Usage: /join <room>" }).waitFor();
  await say(a.page, "one more line before the picture");
  await seesChat(b.page, "alice", "one more line before the picture");

  mkdirSync(shotsDir, { recursive: true });
  await a.page.screenshot({ path: join(shotsDir, "chat-alice.png") });
  await b.page.screenshot({ path: join(shotsDir, "chat-bob.png") });
  t.diagnostic(`screenshots in ${shotsDir}`);

  // The bot leaves: the pages say so.
  await bot.stop();
  await a.page.locator('[data-testid="event-line"][data-kind="leave"][data-name="robot"][data-room="blue"]').waitFor();

  assert.deepEqual(a.problems, [], "page A had no errors");
  assert.deepEqual(b.problems, [], "page B had no errors");

  // The cluster goes away: the page says it is disconnected, and why.
  await cluster.stop();
  await a.page.locator('[data-testid="connection-state"][data-state="closed"]').waitFor();
  await byId(a.page, "disconnected-banner").waitFor({ state: "visible" });
  const reason = (await byId(a.page, "close-reason").textContent()).trim();
  assert.ok(reason.length > 0, "a reason is shown");
  t.diagnostic(`close reason shown: ${reason}`);

  assert.deepEqual(a.problems.filter((p) => p.startsWith("page error")), [], "page A threw nothing while disconnecting");
});
