// Integration test against a real oxworld cluster running demo/echo: one it starts itself, or the one OXWORLD_WS_URL and OXWORLD_SERVER_KEY name.
//
//   OXWORLD_WS_URL=ws://127.0.0.1:14100/ OXWORLD_SERVER_KEY=<64 hex, `oxworld keygen --public`> npm run test:integration
//
// OXWORLD_SERVER_KEY=plain runs against a gate with `encrypt = false`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ClosedError, connect, Float, float, HandshakeError, ServerError } from "../../dist/node.js";

import { after } from "node:test";
import { startCluster } from "../browser/cluster.mjs";

// Without OXWORLD_WS_URL and OXWORLD_SERVER_KEY, a demo/echo cluster of the built binaries is
// started on free ports (idle timeout 2 s, so the heartbeat test runs) and stopped after.
let URL_ = process.env.OXWORLD_WS_URL;
let KEY = process.env.OXWORLD_SERVER_KEY;
if (!URL_ || !KEY) {
  const cluster = await startCluster({ gameDir: "demo/echo", gate: ["heartbeat_timeout_s = 2"] });
  after(() => cluster.stop());
  URL_ = cluster.wsUrl;
  KEY = cluster.serverKey;
}
const skip = false;

const opts = () => (KEY === "plain" ? { encrypt: false } : { serverKey: KEY });

/** `v` with every Float replaced by its number: what decoding gives back. */
function unwrapFloats(v) {
  if (v instanceof Float) return v.value;
  if (Array.isArray(v)) return v.map(unwrapFloats);
  if (v && typeof v === "object" && !(v instanceof Uint8Array)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapFloats(x)]));
  return v;
}

/** The next server call named `name`. */
function reply(client, name, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      offErr();
      reject(new Error(`no ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.onCall(name, (ev) => {
      clearTimeout(t);
      off();
      offErr();
      resolve(ev);
    });
    const offErr = client.on("error", (e) => {
      clearTimeout(t);
      off();
      offErr();
      reject(e);
    });
  });
}

test("echo: values travel to the game and back unchanged", { skip, timeout: 30_000 }, async () => {
  const client = await connect(URL_, opts());
  assert.match(client.clientId, /^[0-9a-f]{32}$/);
  assert.ok(client.heartbeatIntervalMs >= 100);
  const player = await client.waitForPlayer(10_000);
  assert.equal(player.typeName, "Account");
  assert.equal(player.isPlayer, true);
  assert.equal(client.player, player);
  assert.equal(client.entities.get(player.id), player);

  const args = [
    "hi",
    "héllo 😀 \ufeff",
    "",
    0,
    -1,
    42,
    2 ** 53 - 1,
    2n ** 62n,
    -(2n ** 63n),
    1.5,
    float(2),
    -0,
    1e300,
    Infinity,
    true,
    false,
    null,
    new Uint8Array([0, 1, 2, 255]),
    player.idBytes,
    [1, [2, [3, []]], "x"],
    { b: 1, a: [null, true, float(1.5)], nested: { deep: { list: [{}, { k: "v" }] } }, "": "empty key" },
  ];
  const got = reply(client, "echo_reply");
  player.call("echo", ...args);
  const ev = await got;
  assert.equal(ev.entity, player);
  // A Float comes back as its number (float(2) as 2); everything else is identical.
  assert.deepEqual(ev.args, unwrapFloats(args));
  assert.ok(Object.is(ev.args[11], -0), "-0 stays a float");

  // A big argument: 300 000 bytes cross in several records each way.
  const big = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
  const gotBig = reply(client, "echo_reply");
  player.call("echo", big);
  assert.deepEqual((await gotBig).args, [big]);

  // whoami answers with the game id; a Server-only method is refused with NotExposed (3).
  const who = reply(client, "whoami_reply");
  player.call("whoami");
  const [gameId] = (await who).args;
  assert.equal(typeof gameId, "number");
  const refused = new Promise((resolve) => client.once("error", resolve));
  player.call("admin_reset");
  const err = await refused;
  assert.ok(err instanceof ServerError);
  assert.equal(err.code, 3);
  assert.equal(err.codeName, "NotExposed");
  assert.equal(err.methodName, "admin_reset");
  assert.equal(client.isOpen, true);

  const closed = new Promise((resolve) => client.once("close", resolve));
  await client.close();
  const c = await closed;
  assert.equal(c.byClient, true);
  assert.equal(client.status, "closed");
  assert.throws(() => player.call("echo", 1), ClosedError);
});

test("a wrong server key is refused with status 4", { skip: skip || (KEY === "plain" ? "the gate is plain" : false), timeout: 15_000 }, async () => {
  const wrong = KEY.slice(0, 62) + (KEY.slice(62) === "00" ? "01" : "00");
  await assert.rejects(connect(URL_, { serverKey: wrong }), (e) => {
    // Some keys are not valid curve points at all (then the client refuses before sending).
    return e instanceof HandshakeError && (e.status === 4 || e.status === undefined);
  });
});

test("heartbeats keep an idle client connected past the gate's idle timeout", { skip, timeout: 30_000 }, async (t) => {
  const client = await connect(URL_, opts());
  try {
    if (client.idleTimeoutMs > 5000) {
      t.skip(`the gate's idle timeout is ${client.idleTimeoutMs} ms; set heartbeat_timeout_s <= 5 to run this`);
      return;
    }
    const player = await client.waitForPlayer(10_000);
    let closed;
    client.on("close", (c) => (closed = c));
    await new Promise((r) => setTimeout(r, client.idleTimeoutMs * 2.5));
    assert.equal(closed, undefined, `closed: ${closed?.reason}`);
    const got = reply(client, "echo_reply");
    player.call("echo", "still here");
    assert.deepEqual((await got).args, ["still here"]);
  } finally {
    await client.close();
  }
});
