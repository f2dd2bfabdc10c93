// The Client against an in-process fake gate over WebSocket: session, replica, events, calls, heartbeats, errors, close and reconnect.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { WebSocket } from "ws";

import { Client, ClosedError, connect, HandshakeError, methodId, ProtocolError, publicKeyOf, ServerError } from "../dist/index.js";
import * as nodeEntry from "../dist/node.js";
import { fakeGate, GATE_PUBLIC_HEX, idOf, nextEvent, ORIGIN } from "./helpers.mjs";

const OPTS = { serverKey: GATE_PUBLIC_HEX, WebSocket };
const PLAYER = idOf(0x22);
const NPC = idOf(0x33);
const PLAYER_HEX = "22".repeat(16);
const NPC_HEX = "33".repeat(16);

function welcome(conn, idleTimeoutMs = 60000) {
  conn.send({ type: "Welcome", version: 2, clientId: idOf(0x11), idleTimeoutMs });
}

function createPlayer(conn, attrs = {}) {
  conn.send({ type: "CreateEntity", isPlayer: true, id: PLAYER, typeName: "Account", attrs, pos: ORIGIN });
}

test("connect, welcome, player, calls both ways, errors, close", async (t) => {
  const gate = await fakeGate({
    onConnection(conn) {
      // Welcome and the player's creation leave together: a listener added after
      // `await connect()` must still see the creation.
      welcome(conn);
      createPlayer(conn, { hp: 10, inv: [] });
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, OPTS);
  const created = [];
  client.on("entityCreated", (e) => created.push(e));
  const player = await client.waitForPlayer(2000);
  assert.equal(created.length, 1);
  assert.equal(created[0], player);
  assert.equal(client.clientId, "11".repeat(16));
  assert.equal(client.heartbeatIntervalMs, 20000);
  assert.equal(player.id, "22".repeat(16));
  assert.equal(player.typeName, "Account");
  assert.equal(player.isPlayer, true);
  assert.deepEqual(player.attrs, { hp: 10, inv: [] });
  assert.equal(client.entities.get(player.id), player);
  const conn = gate.conns[0];

  // Client -> gate: a call with the method id of its name.
  player.call("echo", "hi", 1, 2n ** 60n, new Uint8Array([1]), { a: [null] });
  const call = await conn.next((m) => m.type === "Call");
  assert.equal(call.method, methodId("echo"));
  assert.deepEqual(call.target, PLAYER);
  assert.deepEqual(call.args, ["hi", 1, 2n ** 60n, new Uint8Array([1]), { a: [null] }]);

  // Gate -> client: a server call, by event and by onCall.
  const byName = new Promise((r) => client.onCall("echo_reply", r));
  const byEntity = new Promise((r) => player.onCall("echo_reply", r));
  conn.send({ type: "Call", id: PLAYER, method: "echo_reply", args: ["hi", 1.5] });
  const ev = await byName;
  assert.equal(ev.entity, player);
  assert.equal(ev.id, player.id);
  assert.deepEqual(ev.args, ["hi", 1.5]);
  assert.equal(await byEntity, ev);

  // An Error for a call names the method this client called.
  const errP = nextEvent(client, "error");
  conn.send({ type: "Error", code: 3, target: PLAYER, method: methodId("echo"), message: "nope" });
  const err = await errP;
  assert.ok(err instanceof ServerError);
  assert.equal(err.code, 3);
  assert.equal(err.codeName, "NotExposed");
  assert.equal(err.methodName, "echo");
  assert.equal(err.isFarewell, false);
  assert.equal(client.isOpen, true);

  // Move: the gate gets the player's id and f32 position; the player snaps there.
  client.move({ x: 1.5, y: 0, z: -2, yaw: 90 });
  const mv = await conn.next((m) => m.type === "Move");
  assert.deepEqual(mv, { type: "Move", id: PLAYER, pos: { x: 1.5, y: 0, z: -2, yaw: 90 } });
  assert.deepEqual(player.position, { x: 1.5, y: 0, z: -2, yaw: 90 });
  assert.throws(() => client.move({ x: NaN, y: 0, z: 0 }), RangeError);

  const closeP = nextEvent(client, "close");
  await client.close();
  const c = await closeP;
  assert.equal(c.byClient, true);
  assert.equal(client.status, "closed");
  assert.throws(() => player.call("echo"), ClosedError);
  assert.equal(client.entities.size, 0);
  assert.equal(player.destroyed, true);
});

test("the replica: AOI, attribute ops with path subscriptions, positions and interpolation", async (t) => {
  let clock = 1000;
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      createPlayer(conn, { stats: { hp: 10 }, inv: ["a"] });
    },
  });
  t.after(() => gate.close());
  const client = new Client(gate.url, { ...OPTS, now: () => clock, maxInterpolationMs: 250 });
  const log = [];
  for (const ev of ["entityCreated", "entityDestroyed", "enterAoi", "leaveAoi", "player"]) client.on(ev, (e) => log.push(`${ev}:${e.typeName}`));
  await client.connect();
  const player = await client.waitForPlayer(2000);
  const conn = gate.conns[0];

  const hp = [];
  player.onAttr(["stats", "hp"], (v, ch) => hp.push([v, ch.op.kind]));
  const inv = [];
  player.onAttr("inv", (v, ch) => inv.push([structuredClone(v), ch.path]));
  const all = [];
  client.on("attrChanged", (c) => all.push([c.path, c.value]));
  const done = nextEvent(client, "attrChanged", (c) => c.op.kind === "MapDel");
  conn.send({
    type: "AttrOps",
    id: PLAYER,
    ops: [
      { kind: "MapSet", path: ["stats"], key: "hp", value: 7 },
      { kind: "ListAppend", path: ["inv"], value: "b" },
      { kind: "ListSet", path: ["inv"], index: 0, value: "z" },
      { kind: "ListPop", path: ["inv"] },
      { kind: "MapSet", path: [], key: "stats", value: { hp: 3, mp: 1 } },
      { kind: "MapSet", path: [], key: "gold", value: 5 },
      { kind: "MapDel", path: [], key: "gold" },
    ],
  });
  await done;
  assert.deepEqual(player.attrs, { stats: { hp: 3, mp: 1 }, inv: ["z"] });
  assert.deepEqual(hp, [
    [7, "MapSet"],
    [3, "MapSet"],
  ]);
  assert.deepEqual(inv.map((x) => x[1]), [["inv", 1], ["inv", 0], ["inv", 1]]);
  assert.deepEqual(all[0], [["stats", "hp"], 7]);
  assert.deepEqual(all.at(-1), [["gold"], undefined]);
  assert.equal(player.attr(["stats", "mp"]), 1);

  // Another entity enters the AOI, moves twice, and leaves.
  const entered = nextEvent(client, "enterAoi");
  conn.send({ type: "CreateEntity", isPlayer: false, id: NPC, typeName: "Npc", attrs: {}, pos: { x: 0, y: 0, z: 0, yaw: 350 } });
  const npc = await entered;
  assert.equal(client.entities.size, 2);
  clock = 2000;
  let pos = nextEvent(client, "positions");
  conn.send({ type: "Positions", entries: [{ id: NPC, pos: { x: 10, y: 0, z: 0, yaw: 10 } }, { id: idOf(0x99), pos: ORIGIN }] });
  assert.deepEqual((await pos).entities, [npc]);
  // The first move after a long pause animates over maxInterpolationMs (250 ms).
  assert.deepEqual(npc.interpolatedPosition(2000), { x: 0, y: 0, z: 0, yaw: 350 });
  const mid = npc.interpolatedPosition(2125);
  assert.equal(mid.x, 5);
  assert.equal(mid.yaw, 360, "yaw turns the short way (350 -> 10 through 0)");
  assert.deepEqual(npc.interpolatedPosition(9000), { x: 10, y: 0, z: 0, yaw: 10 });
  clock = 2100;
  pos = nextEvent(client, "positions");
  conn.send({ type: "Positions", entries: [{ id: NPC, pos: { x: 20, y: 0, z: 0, yaw: 10 } }] });
  await pos;
  // It was drawn at x = 4 (100/250 of the way) when the update came: it goes on from there over 100 ms.
  assert.equal(npc.previousPosition.x, 4);
  assert.equal(npc.interpolatedPosition(2150).x, 12);
  assert.equal(npc.interpolatedPosition(2200).x, 20);

  const left = nextEvent(client, "leaveAoi");
  conn.send({ type: "DestroyEntity", id: NPC });
  assert.equal(await left, npc);
  assert.equal(npc.destroyed, true);
  assert.equal(client.entities.size, 1);
  assert.deepEqual(log, ["entityCreated:Account", "player:Account", "entityCreated:Npc", "enterAoi:Npc", "entityDestroyed:Npc", "leaveAoi:Npc"]);
  await client.close();
});

test("PlayerLost: every entity and the player are forgotten; the new boot entity becomes the player", async (t) => {
  const BOOT = idOf(0x44);
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      createPlayer(conn, { hp: 10 });
      conn.send({ type: "CreateEntity", isPlayer: false, id: NPC, typeName: "Npc", attrs: {}, pos: ORIGIN });
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, OPTS);
  const log = [];
  for (const ev of ["entityCreated", "entityDestroyed", "enterAoi", "leaveAoi", "player"]) client.on(ev, (e) => log.push(`${ev}:${e.typeName}`));
  client.on("reconnected", () => log.push("reconnected"));
  const old = await client.waitForPlayer(2000);
  const npc = await new Promise((r) => (client.entities.has(NPC_HEX) ? r(client.entities.get(NPC_HEX)) : client.once("enterAoi", r)));
  log.length = 0;
  const npcDestroyed = new Promise((r) => npc.on("destroyed", r));
  const conn = gate.conns[0];

  // At playerLost, the replica is already empty; a waitForPlayer from there gets the boot entity.
  let seen;
  let next;
  const lost = new Promise((resolve) =>
    client.once("playerLost", (ev) => {
      seen = { size: client.entities.size, player: client.player, destroyed: [old.destroyed, npc.destroyed] };
      log.push("playerLost");
      next = client.waitForPlayer(2000);
      resolve(ev);
    }),
  );
  conn.send({ type: "PlayerLost", entity: PLAYER, game: 2, message: "game2 is gone" });
  conn.send({ type: "CreateEntity", isPlayer: true, id: BOOT, typeName: "Account", attrs: {}, pos: ORIGIN });
  const ev = await lost;
  assert.equal(ev.id, PLAYER_HEX);
  assert.equal(ev.entity, old);
  assert.equal(ev.game, 2);
  assert.equal(ev.message, "game2 is gone");
  assert.deepEqual(seen, { size: 0, player: undefined, destroyed: [true, true] });
  assert.equal(await npcDestroyed, npc);

  const boot = await next;
  assert.notEqual(boot, old);
  assert.equal(boot.id, "44".repeat(16));
  assert.equal(boot.isPlayer, true);
  assert.equal(client.player, boot);
  assert.deepEqual([...client.entities.keys()], [boot.id]);
  assert.deepEqual(log, [
    "entityDestroyed:Account",
    "entityDestroyed:Npc",
    "leaveAoi:Npc",
    "playerLost",
    "entityCreated:Account",
    "player:Account",
  ]);
  // The same session: same client id, still open, no reconnection; log in again on the boot entity.
  assert.equal(client.clientId, "11".repeat(16));
  assert.equal(client.isOpen, true);
  boot.call("login", "alice", "secret");
  const login = await conn.next((m) => m.type === "Call");
  assert.deepEqual(login.target, BOOT);
  assert.deepEqual(login.args, ["alice", "secret"]);
  // Messages about forgotten entities find nothing.
  conn.send({ type: "Positions", entries: [{ id: NPC, pos: { x: 1, y: 2, z: 3, yaw: 0 } }, { id: BOOT, pos: { x: 4, y: 5, z: 6, yaw: 0 } }] });
  assert.deepEqual((await nextEvent(client, "positions")).entities, [boot]);
  assert.equal(client.entities.size, 1);
  await client.close();
});

test("PlayerLost of an unknown entity, before any player, still empties the replica", async (t) => {
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      conn.send({ type: "CreateEntity", isPlayer: false, id: NPC, typeName: "Space", attrs: {}, pos: ORIGIN });
      conn.send({ type: "PlayerLost", entity: PLAYER, game: 7, message: "killed" });
    },
  });
  t.after(() => gate.close());
  const client = new Client(gate.url, OPTS);
  const lost = nextEvent(client, "playerLost");
  await client.connect();
  const ev = await lost;
  assert.deepEqual({ ...ev }, { id: PLAYER_HEX, entity: undefined, game: 7, message: "killed" });
  assert.equal(client.entities.size, 0);
  assert.equal(client.player, undefined);
  assert.equal(client.isOpen, true);
  await client.close();
});

test("heartbeats fill the silences: a third of the idle timeout after the last send", async (t) => {
  const gate = await fakeGate({ onConnection: (conn) => welcome(conn, 900) });
  t.after(() => gate.close());
  const client = await connect(gate.url, OPTS);
  assert.equal(client.heartbeatIntervalMs, 300);
  const conn = gate.conns[0];
  const t0 = Date.now();
  await conn.next((m) => m.type === "Heartbeat", 3000);
  const first = Date.now() - t0;
  assert.ok(first >= 200 && first < 1500, `first heartbeat after ${first} ms`);
  await conn.next((m) => m.type === "Heartbeat", 3000);
  // Calls count as traffic: while calling every 50 ms, no heartbeat goes out.
  conn.messages.length = 0;
  for (let i = 0; i < 8; i++) {
    client.call(PLAYER, "ping");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(conn.messages.filter((m) => m.type === "Heartbeat").length, 0);
  await client.close();
});

test("the gate's last word becomes the close reason", async (t) => {
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      setTimeout(() => {
        conn.send({ type: "Error", code: 9, target: new Uint8Array(16), method: 0, message: "no message for 60000 ms" });
        setTimeout(() => conn.ws.close(), 20);
      }, 30);
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, OPTS);
  const errors = [];
  client.on("error", (e) => errors.push(e));
  const c = await nextEvent(client, "close");
  assert.equal(c.reason, "no message for 60000 ms");
  assert.equal(c.byClient, false);
  assert.ok(c.error instanceof ClosedError);
  assert.equal(c.error.serverError.codeName, "Idle");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].isFarewell, true);
});

test("reconnect: a lost session is retried with back-off; a new session brings a new player", async (t) => {
  let n = 0;
  const gate = await fakeGate({
    onConnection(conn) {
      n++;
      conn.send({ type: "Welcome", version: 2, clientId: idOf(n), idleTimeoutMs: 60000 });
      conn.send({ type: "CreateEntity", isPlayer: true, id: idOf(0x40 + n), typeName: "Account", attrs: {}, pos: ORIGIN });
      if (n === 1) setTimeout(() => conn.ws.terminate(), 50);
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, { ...OPTS, reconnect: { initialMs: 20, maxMs: 100 } });
  const first = await client.waitForPlayer(2000);
  const events = [];
  client.on("entityDestroyed", (e) => events.push(`destroyed:${e.id.slice(0, 2)}`));
  client.on("reconnecting", (e) => events.push(`reconnecting:${e.attempt}`));
  client.on("reconnected", (e) => events.push(`reconnected:${e.clientId.slice(0, 2)}`));
  const second = await nextEvent(client, "player");
  assert.notEqual(second, first);
  assert.equal(second.id, "42".repeat(16));
  assert.equal(first.destroyed, true);
  assert.deepEqual(events, ["destroyed:41", "reconnecting:1", "reconnected:02"]);
  assert.equal(client.clientId, "02".repeat(16));
  assert.equal(client.isOpen, true);
  await client.close();
});

test("resume (revision 2.2): a lost session is resumed on the next gate with the same player and the kept calls", async (t) => {
  const TOKEN1 = idOf(0x71);
  const TOKEN2 = idOf(0x72);
  // Gate A gives the session and then dies; gate B (a fallback URL) resumes it.
  const gateA = await fakeGate({
    onConnection(conn) {
      conn.send({ type: "Welcome", version: 2, clientId: idOf(0x11), idleTimeoutMs: 60000 });
      conn.send({ type: "Session", token: TOKEN1 });
      createPlayer(conn, { hp: 3 });
    },
  });
  const seen = [];
  const gateB = await fakeGate({
    async onConnection(conn) {
      seen.push(conn.ch.resume);
      conn.send({ type: "Welcome", version: 2, clientId: idOf(0x12), idleTimeoutMs: 60000 });
      conn.send({ type: "Session", token: TOKEN2 });
      const first = await conn.next();
      seen.push(first);
      conn.send({ type: "Resumed", player: PLAYER, dropped: 1 });
      createPlayer(conn, { hp: 4 });
      conn.send({ type: "Call", id: PLAYER, method: "kept", args: [9] });
    },
  });
  t.after(() => gateB.close());
  const client = await connect(gateA.url, { ...OPTS, reconnect: { initialMs: 20, maxMs: 100 }, fallbackUrls: [gateB.url] });
  const first = await client.waitForPlayer(2000);
  const resumed = nextEvent(client, "resumed");
  const kept = new Promise((r) => client.onCall("kept", (e) => r(e)));
  await gateA.close();
  const ev = await resumed;
  assert.deepEqual(ev, { player: PLAYER_HEX, dropped: 1 });
  const call = await kept;
  assert.deepEqual(call.args, [9]);
  assert.equal(client.player.id, PLAYER_HEX, "the same player");
  assert.notEqual(client.player, first, "a fresh replica from the view");
  assert.deepEqual(client.player.attrs, { hp: 4 });
  assert.equal(seen[0], true, "the hello offered resume");
  assert.equal(seen[1].type, "Resume");
  assert.deepEqual([seen[1].client, seen[1].player, seen[1].token], [idOf(0x11), PLAYER, TOKEN1]);
  await client.close();
});

test("a kick is final even with reconnect on", async (t) => {
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      createPlayer(conn);
      setTimeout(() => {
        conn.send({ type: "Error", code: 12, target: PLAYER, method: 0, message: "see you tomorrow" });
        setTimeout(() => conn.ws.close(), 20);
      }, 30);
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, { ...OPTS, reconnect: { initialMs: 10 } });
  let retried = false;
  client.on("reconnecting", () => (retried = true));
  const c = await nextEvent(client, "close");
  assert.equal(c.reason, "see you tomorrow");
  assert.equal(retried, false);
  assert.equal(gate.conns.length, 1);
});

test("connect fails cleanly: wrong key, plain client on an encrypting gate, nobody listening, timeout", async (t) => {
  const gate = await fakeGate({ onConnection: (conn) => welcome(conn) });
  t.after(() => gate.close());
  await assert.rejects(
    connect(gate.url, { serverKey: publicKeyOf(new Uint8Array(32).fill(9)), WebSocket }),
    (e) => e instanceof HandshakeError && e.status === 4 && /server key/.test(e.reason),
  );
  await assert.rejects(connect(gate.url, { serverKey: "00".repeat(32), WebSocket }), (e) => e instanceof HandshakeError && e.status === undefined);
  await assert.rejects(connect(gate.url, { encrypt: false, WebSocket }), (e) => e instanceof HandshakeError && e.status === 3 && e.gateMode === 1);
  await assert.rejects(connect("ws://127.0.0.1:9/", { ...OPTS, reconnect: true }), (e) => e instanceof ClosedError);
  const silent = await fakeGate({ onConnection: () => {} });
  t.after(() => silent.close());
  await assert.rejects(connect(silent.url, { ...OPTS, connectTimeoutMs: 200 }), (e) => e instanceof ClosedError && /Welcome/.test(e.reason));
  assert.throws(() => new Client(gate.url, { WebSocket }), TypeError, "no serverKey and encrypt not false");
  assert.throws(() => new Client(gate.url, { serverKey: "abc", WebSocket }), TypeError);
});

test("hostile gates: garbage message, text message, replica out of step", async (t) => {
  const cases = [
    ["an undecodable message", (conn) => conn.send({ type: "Welcome", version: 2, clientId: idOf(1), idleTimeoutMs: 1 }) || conn.raw(conn.ch.seal(Uint8Array.of(0x77))[0]), "UnknownType"],
    ["a text message", (conn) => (welcome(conn), conn.ws.send("hello")), "Transport"],
    [
      "an op that does not fit",
      (conn) => {
        welcome(conn);
        createPlayer(conn);
        conn.send({ type: "AttrOps", id: PLAYER, ops: [{ kind: "ListAppend", path: ["nope"], value: 1 }] });
      },
      "Replica",
    ],
    ["a second Welcome", (conn) => (welcome(conn), welcome(conn)), "Invalid"],
  ];
  for (const [what, behave, kind] of cases) {
    const gate = await fakeGate({ onConnection: behave });
    const client = new Client(gate.url, OPTS);
    const closed = nextEvent(client, "close");
    await client.connect();
    const c = await closed;
    assert.ok(c.error instanceof ProtocolError, what);
    assert.equal(c.error.kind, kind, what);
    await gate.close();
  }
  t.diagnostic("every hostile gate closed the client with a ProtocolError");
});

test("a plain (encrypt: false) gate works the same", async (t) => {
  const gate = await fakeGate({
    encrypt: false,
    onConnection(conn) {
      welcome(conn);
      createPlayer(conn);
    },
  });
  t.after(() => gate.close());
  const client = await connect(gate.url, { encrypt: false, WebSocket });
  const p = await client.waitForPlayer(2000);
  p.call("echo", "x");
  const call = await gate.conns[0].next((m) => m.type === "Call");
  assert.deepEqual(call.args, ["x"]);
  await client.close();
});

test("the Node entry finds ws by itself (Node 20 has no global WebSocket)", async (t) => {
  const gate = await fakeGate({ onConnection: (conn) => welcome(conn) });
  t.after(() => gate.close());
  const client = await nodeEntry.connect(gate.url, { serverKey: GATE_PUBLIC_HEX });
  assert.equal(client.isOpen, true);
  await client.close();
});

test("the browser entry imports nothing from Node or ws", () => {
  const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
  const seen = new Set();
  const bare = new Set();
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(join(dist, file), "utf8");
    for (const m of src.matchAll(/(?:import|export)[^"']*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith("./")) visit(spec.slice(2));
      else bare.add(spec);
    }
  };
  visit("index.js");
  assert.ok(!seen.has("node.js"));
  assert.deepEqual([...bare].sort(), ["@noble/ciphers/chacha.js", "@noble/curves/ed25519.js", "@noble/hashes/hmac.js", "@noble/hashes/sha2.js"]);
});

test("a gate that says its last word and closes at once, right after the Welcome, is heard", async (t) => {
  const gate = await fakeGate({
    onConnection(conn) {
      welcome(conn);
      createPlayer(conn);
      conn.send({ type: "Error", code: 12, target: PLAYER, method: 0, message: "banned" });
      conn.ws.close();
    },
  });
  t.after(() => gate.close());
  const client = new Client(gate.url, OPTS);
  const closed = nextEvent(client, "close");
  const created = [];
  client.on("entityCreated", (e) => created.push(e.typeName));
  await client.connect().catch(() => {});
  const c = await closed;
  assert.equal(c.reason, "banned");
  assert.equal(c.error.serverError.codeName, "Kicked");
  assert.deepEqual(created, ["Account"]);
});
