// The arena page (demo/arena/web) in headless Chromium against a real cluster (one dispatcher,
// two games, a gate serving the page): two users register and log in through the form, the
// page draws the monsters the replica holds, a frozen test monster is shot by clicking on it
// on the canvas, and both pages' replicas see its hp drop. Screenshots: arena-1.png and
// arena-2.png in $OXWORLD_SCREENSHOTS (default net/ts/test-output/screenshots).
//
//   cd net/ts && node --test test/browser/arena.test.mjs
//
// Needs the built binaries (target/debug, or $OXWORLD_BIN_DIR) and Chromium (/usr/bin/chromium
// or $CHROMIUM); fails saying which is missing. Never runs cargo, never downloads.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

import { launchBrowser } from "./browser.mjs";
import { binDir, repoRoot, startCluster } from "./cluster.mjs";

const SCREENSHOTS = resolve(process.env.OXWORLD_SCREENSHOTS || join(repoRoot, "net", "ts", "test-output", "screenshots"));
const VIEWPORT = { width: 1280, height: 720 };
const WAIT = 30_000;

function missing() {
  const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(chromium)) return `no Chromium at ${chromium} (set CHROMIUM)`;
  for (const b of ["oxworld", "oxworld-dispatcher", "oxworld-gate", "arena"]) {
    if (!existsSync(join(binDir(), b))) return `${join(binDir(), b)} is missing (build the workspace first)`;
  }
  return undefined;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A page of its own browser context, with its console errors and uncaught exceptions kept. */
async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  // Connected to the gate: the form's buttons are enabled.
  await page.waitForSelector("[data-testid=register-button]:not([disabled])", { timeout: WAIT });
  return { page, errors };
}

/** Registers `user` through the form (the page logs in right after) and waits for arena 1. */
async function registerAndPlay(page, user, password) {
  await page.fill("[data-testid=login-user]", user);
  await page.fill("[data-testid=login-password]", password);
  await page.click("[data-testid=register-button]");
  try {
    await page.waitForFunction(() => window.__arena.ready && window.__arena.client.player?.typeName === "Player", null, { timeout: WAIT });
  } catch (e) {
    const said = await page.textContent("[data-testid=login-message]").catch(() => "?");
    throw new Error(`${user} never entered an arena (the form says: ${said})`, { cause: e });
  }
  assert.equal(await page.isVisible("[data-testid=login]"), false, "the login form is gone");
  assert.equal(await page.isVisible("[data-testid=hud]"), true, "the HUD shows");
  assert.equal(await page.textContent("[data-testid=hud-name]"), user);
  assert.match(await page.textContent("[data-testid=hud-arena]"), /^1 /);
}

/** The replica's view of entity `id` on `page`: { type, hp, x, z } or null. */
function entityOn(page, id) {
  return page.evaluate((id) => {
    const e = window.__arena.client.entities.get(id);
    if (!e) return null;
    return { type: e.typeName, hp: Number(e.attrs.hp), x: e.position.x, z: e.position.z };
  }, id);
}

/** The own player on `page`: { id, hp, x, z }. */
function playerOn(page) {
  return page.evaluate(() => {
    const p = window.__arena.client.player;
    return { id: p.id, hp: Number(p.attrs.hp), x: p.position.x, z: p.position.z };
  });
}

/** Moves the page's player to (x, z) through the client (client-driven movement). */
function moveTo(page, x, z) {
  return page.evaluate(
    ({ x, z }) => {
      try {
        window.__arena.client.move({ x, y: 0, z, yaw: 0 });
        return true;
      } catch {
        return false;
      }
    },
    { x, z },
  );
}

/** Counts reddish pixels (monster bodies) and distinct colours of the page's canvas. */
function canvasStats(page) {
  return page.evaluate(() => {
    const c = document.querySelector("[data-testid=arena-canvas]");
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let red = 0;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4 * 7) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (r > 150 && g < 90 && b < 90) red++;
      if (colours.size < 5000) colours.add((r >> 3) * 1024 + (g >> 3) * 32 + (b >> 3));
    }
    return { red, colours: colours.size };
  });
}

test("the arena page: two players, monsters on the canvas, a click shoots, both replicas see the hp drop", { timeout: 240_000 }, async (t) => {
  const why = missing();
  // A browser test that cannot run fails: it never passes silently.
  assert.equal(why, undefined, why ?? "");
  mkdirSync(SCREENSHOTS, { recursive: true });
  let cluster;
  let browser;
  try {
    cluster = await startCluster({ gameDir: "demo/arena", games: 2 });
    browser = await launchBrowser();
    const [one, two] = await Promise.all([openPage(browser, cluster.httpUrl), openPage(browser, cluster.httpUrl)]);
    const suffix = Math.random().toString(36).slice(2, 7);
    await Promise.all([registerAndPlay(one.page, `ann_${suffix}`, "s3cret-1"), registerAndPlay(two.page, `bob_${suffix}`, "s3cret-2")]);

    // The arena spawns monsters near its players; the page draws what the replica holds.
    await one.page.waitForFunction(
      () => {
        const a = window.__arena;
        const inReplica = [...a.client.entities.values()].filter((e) => e.typeName === "Monster").length;
        return inReplica > 0 && (a.drawnTypes().Monster ?? 0) > 0;
      },
      null,
      { timeout: WAIT },
    );
    const stats = await canvasStats(one.page);
    assert.ok(stats.colours > 20, `the canvas is not blank: ${stats.colours} colours`);
    assert.ok(stats.red > 5, `monsters are drawn (red pixels: ${stats.red})`);

    // A frozen test monster 10 units beside the first player (towards the middle).
    const p1 = await playerOn(one.page);
    const dx = p1.x > 100 ? -10 : 10;
    const monster = await one.page.evaluate(
      (dx) =>
        new Promise((resolveId, reject) => {
          const a = window.__arena;
          const timer = setTimeout(() => reject(new Error("no on_test_monster")), 10_000);
          const off = a.client.onCall("on_test_monster", ({ args }) => {
            off();
            clearTimeout(timer);
            resolveId(Array.from(args[0], (b) => b.toString(16).padStart(2, "0")).join(""));
          });
          a.client.player.call("spawn_test_monster", dx, 0);
        }),
      dx,
    );
    await one.page.waitForFunction((id) => window.__arena.screenOf(id) !== null, monster, { timeout: WAIT });
    const m1 = await entityOn(one.page, monster);
    assert.equal(m1.type, "Monster");
    assert.equal(m1.hp, 100);
    assert.ok(Math.abs(m1.x - (p1.x + dx)) < 0.01 && Math.abs(m1.z - p1.z) < 0.01, `the monster stands where asked: ${JSON.stringify(m1)}`);

    // The second player walks (client-driven moves) next to it until its replica has it too.
    const near = { x: Math.min(Math.max(m1.x, 5), 195), z: m1.z > 100 ? m1.z - 14 : m1.z + 14 };
    const seenBy2 = Date.now() + WAIT;
    while ((await entityOn(two.page, monster)) === null) {
      assert.ok(Date.now() < seenBy2, "the second player never saw the test monster");
      await moveTo(two.page, near.x, near.z);
      await sleep(400);
    }
    assert.equal((await entityOn(two.page, monster)).hp, 100);

    // Page one records the on_shoot calls it gets.
    await one.page.evaluate(() => {
      window.__testShots = [];
      window.__arena.client.onCall("on_shoot", ({ args }) => {
        const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
        window.__testShots.push({ shooter: hex(args[0]), target: hex(args[1]), hit: args[2], damage: args[3] });
      });
    });

    // Shoot it by clicking where page one draws it, until a shot hits (hit chance ~93% at 10).
    const deadline = Date.now() + 60_000;
    let clicks = 0;
    for (;;) {
      const m = await entityOn(one.page, monster);
      assert.ok(m, "the test monster is still there");
      if (m.hp < 100) break;
      assert.ok(Date.now() < deadline, `the monster still has ${m.hp} hp after ${clicks} clicks`);
      const me = await playerOn(one.page);
      if (me.hp <= 0) {
        // Killed by the monsters around: wait for the respawn.
        await sleep(500);
        continue;
      }
      if (Math.hypot(me.x - m.x, me.z - m.z) > 40) {
        // Respawned far away: back next to it.
        await moveTo(one.page, m.x - dx, m.z);
        await sleep(400);
        continue;
      }
      const at = await one.page.evaluate((id) => window.__arena.screenOf(id), monster);
      assert.ok(at, "page one draws the test monster");
      await one.page.mouse.click(at.x, at.y);
      clicks++;
      await one.page
        .waitForFunction((id) => Number(window.__arena.client.entities.get(id)?.attrs.hp) < 100, monster, { timeout: 700 })
        .catch(() => {});
    }
    const after1 = (await entityOn(one.page, monster)).hp;
    assert.ok(after1 === 75 || after1 === 50, `a hit takes 25 hp: ${after1}`);
    const shotsSeen = await one.page.evaluate(() => window.__testShots);
    const mine = shotsSeen.filter((s) => s.shooter === p1.id && s.target === monster);
    assert.ok(mine.length >= 1 && mine.length <= clicks, `each click is one shot: ${clicks} clicks, ${JSON.stringify(shotsSeen)}`);
    assert.ok(
      mine.some((s) => s.hit === true && s.damage === 25),
      `a hit for 25: ${JSON.stringify(mine)}`,
    );
    // The second player's replica has the same hp.
    await two.page.waitForFunction((id) => Number(window.__arena.client.entities.get(id)?.attrs.hp) < 100, monster, { timeout: WAIT });
    const after2 = (await entityOn(two.page, monster)).hp;
    assert.equal(after2, (await entityOn(one.page, monster)).hp, "both replicas agree");
    // The log tells the shooter.
    assert.ok((await one.page.evaluate(() => window.__arena.logLines())).some((l) => /you (hit|missed) monster/.test(l)));

    // One more shot for the pictures (its tracer shows on both pages), then the screenshots.
    await sleep(250);
    const at = await one.page.evaluate((id) => window.__arena.screenOf(id), monster);
    if (at) await one.page.mouse.click(at.x, at.y);
    await sleep(140);
    await Promise.all([
      one.page.screenshot({ path: join(SCREENSHOTS, "arena-1.png") }),
      two.page.screenshot({ path: join(SCREENSHOTS, "arena-2.png") }),
    ]);
    t.diagnostic(`screenshots: ${join(SCREENSHOTS, "arena-1.png")}, ${join(SCREENSHOTS, "arena-2.png")}`);

    assert.deepEqual(one.errors, [], "page one ran without errors");
    assert.deepEqual(two.errors, [], "page two ran without errors");
  } finally {
    await browser?.close().catch((e) => console.error(`# closing the browser: ${e.message}`));
    await cluster?.stop();
  }
});
