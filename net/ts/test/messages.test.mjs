// Messages of sections 6 and 7 and attribute operations: round trips, every truncation, hostile fields, fuzz, and applying ops like attr_op.rs.

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyAttrOp, ApplyError, decodeServerMsg, encodeClientMsg, float, ProtocolError } from "../dist/index.js";
import { readAttrOps, writeAttrOps } from "../dist/attr_op.js";
import { decodeClientMsg, encodeServerMsg } from "../dist/messages.js";
import { Reader, Writer } from "../dist/wire.js";
import { h, hex, idOf, rng, throwsProtocol } from "./helpers.mjs";

const opSamples = () => [
  { kind: "MapSet", path: [], key: "hp", value: 10 },
  { kind: "MapSet", path: [], key: "inv", value: [] },
  { kind: "ListAppend", path: ["inv"], value: {} },
  { kind: "MapSet", path: ["inv", 0], key: "name", value: "sword" },
  { kind: "ListSet", path: ["inv"], index: 0, value: "axe" },
  { kind: "ListPop", path: ["inv"] },
  { kind: "MapDel", path: [], key: "hp" },
  { kind: "MapClear", path: ["inv2"] },
];

const serverSamples = () => [
  { type: "Welcome", version: 2, clientId: idOf(1), idleTimeoutMs: 30000 },
  { type: "CreateEntity", isPlayer: true, id: idOf(2), typeName: "Account", attrs: { hp: 3, name: "x" }, pos: { x: 1.5, y: 0, z: -2, yaw: 90 } },
  { type: "CreateEntity", isPlayer: false, id: idOf(3), typeName: "Npc", attrs: {}, pos: { x: 0, y: 0, z: 0, yaw: 0 } },
  { type: "DestroyEntity", id: idOf(2) },
  { type: "Call", id: idOf(2), method: "echo_reply", args: [1, "two", [3n ** 39n, -(2n ** 63n)], { f: float(0.5) }] },
  { type: "Call", id: idOf(2), method: "", args: [] },
  { type: "Error", code: 3, target: idOf(2), method: 9, message: "nope" },
  { type: "Positions", entries: [{ id: idOf(2), pos: { x: 1, y: 2, z: 3, yaw: 0 } }, { id: idOf(3), pos: { x: 0, y: 0, z: 0, yaw: 0 } }] },
  { type: "Positions", entries: [] },
  { type: "AttrOps", id: idOf(2), ops: opSamples() },
  { type: "PlayerLost", entity: idOf(5), game: 2, message: "game2 is gone" },
  { type: "PlayerLost", entity: idOf(6), game: 0xffff, message: "" },
  { type: "Session", token: idOf(7) },
  { type: "Resumed", player: idOf(8), dropped: 3 },
];

test("server messages round-trip; every strict prefix and any trailing byte is a ProtocolError", () => {
  for (const m of serverSamples()) {
    const b = encodeServerMsg(m);
    const d = decodeServerMsg(b);
    assert.equal(d.type, m.type);
    assert.equal(hex(encodeServerMsg(d)), hex(b), `${m.type} re-encodes identically`);
    for (let cut = 0; cut < b.length; cut++) throwsProtocol(() => decodeServerMsg(b.subarray(0, cut)), `${m.type} cut at ${cut}`);
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    assert.equal(throwsProtocol(() => decodeServerMsg(longer)).kind, "Trailing");
  }
});

test("PlayerLost (0x88, revision 2.1 of protocol 2), byte for byte", () => {
  const want = h("88 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 02 00 04 00 00 00 67 6f 6e 65");
  const m = { type: "PlayerLost", entity: h("00112233445566778899aabbccddeeff"), game: 2, message: "gone" };
  assert.equal(hex(encodeServerMsg(m)), hex(want));
  assert.deepEqual(decodeServerMsg(want), m);
  // The game id is a little-endian u16; the message is UTF-8.
  const d = decodeServerMsg(encodeServerMsg({ ...m, game: 0x1234, message: "é" }));
  assert.equal(d.game, 0x1234);
  assert.equal(d.message, "é");
  assert.equal(hex(encodeServerMsg({ ...m, game: 0x1234, message: "é" })).slice(34), "3412" + "02000000c3a9");
  for (let cut = 0; cut < want.length; cut++) {
    const e = throwsProtocol(() => decodeServerMsg(want.subarray(0, cut)), `cut at ${cut}`);
    if (cut > 0) assert.ok(e.kind === "Truncated" || e.kind === "LengthAttack", `cut at ${cut}: ${e.kind}`);
  }
  assert.throws(() => encodeServerMsg({ ...m, entity: new Uint8Array(15) }), TypeError);
});

test("the resume exchange (revision 2.2), byte for byte as PROTOCOL.md sections 6 and 7", () => {
  const [a, b, c] = [idOf(0xaa), idOf(0xbb), idOf(0xcc)];
  assert.equal(hex(encodeClientMsg({ type: "Resume", client: a, player: b, token: c })), "04" + "aa".repeat(16) + "bb".repeat(16) + "cc".repeat(16));
  assert.equal(hex(encodeServerMsg({ type: "Session", token: c })), "89" + "cc".repeat(16));
  assert.equal(hex(encodeServerMsg({ type: "Resumed", player: b, dropped: 2 })), "8a" + "bb".repeat(16) + "02000000");
  assert.deepEqual(decodeServerMsg(h("8a" + "bb".repeat(16) + "02000000")), { type: "Resumed", player: b, dropped: 2 });
});

test("client messages round-trip; truncations are ProtocolErrors", () => {
  const samples = [
    { type: "Call", target: idOf(3), method: 0xd49dd484, args: ["hi"] },
    { type: "Heartbeat" },
    { type: "Move", id: idOf(4), pos: { x: 1, y: 2, z: 3, yaw: 45 } },
    { type: "Resume", client: idOf(5), player: idOf(6), token: idOf(7) },
  ];
  for (const m of samples) {
    const b = encodeClientMsg(m);
    assert.deepEqual(decodeClientMsg(b), m);
    for (let cut = 0; cut < b.length; cut++) throwsProtocol(() => decodeClientMsg(b.subarray(0, cut)));
  }
  assert.equal(encodeClientMsg(samples[2]).length, 33);
  assert.throws(() => encodeClientMsg({ type: "Call", target: new Uint8Array(3), method: 1, args: [] }), TypeError);
});

test("hostile server messages", () => {
  assert.equal(throwsProtocol(() => decodeServerMsg(h("00"))).kind, "UnknownType");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("01"))).kind, "UnknownType", "a client type from the server");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("8b"))).kind, "UnknownType");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("89"))).kind, "Truncated", "Session (revision 2.2) is known");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("88"))).kind, "Truncated", "PlayerLost (revision 2.1) is known");
  assert.equal(throwsProtocol(() => decodeServerMsg(new Uint8Array(0))).kind, "Truncated");
  const badBool = new Uint8Array(42);
  badBool[0] = 0x82;
  badBool[1] = 7;
  assert.equal(throwsProtocol(() => decodeServerMsg(badBool)).kind, "Invalid");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("87 ff ff ff ff" + "00".repeat(40)))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("87 02 00 00 00" + "00".repeat(40)))).kind, "LengthAttack");
  // Call: a method name that is not UTF-8, an argument count past the end.
  assert.equal(throwsProtocol(() => decodeServerMsg(h("84" + "00".repeat(16) + "01 00 00 00 ff 00 00 00 00"))).kind, "BadUtf8");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("84" + "00".repeat(16) + "00 00 00 00 ff ff 00 00 00"))).kind, "LengthAttack");
  // Error: message length past the end.
  assert.equal(throwsProtocol(() => decodeServerMsg(h("85 01 00" + "00".repeat(16) + "00 00 00 00 05 00 00 00 61"))).kind, "LengthAttack");
  // PlayerLost: message length past the end, a message that is not UTF-8.
  assert.equal(throwsProtocol(() => decodeServerMsg(h("88" + "00".repeat(16) + "02 00 05 00 00 00 61"))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeServerMsg(h("88" + "00".repeat(16) + "02 00 01 00 00 00 ff"))).kind, "BadUtf8");
  // AttrOps: op count attack, unknown op kind, unknown path element, a path of 33 elements.
  const id = "00".repeat(16);
  assert.equal(throwsProtocol(() => decodeServerMsg(h(`86 ${id} ff ff ff ff 00`))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeServerMsg(h(`86 ${id} 01 00 00 00 07 00 00 00 00`))).kind, "Invalid");
  assert.equal(throwsProtocol(() => decodeServerMsg(h(`86 ${id} 01 00 00 00 00 00 00 00 00`))).kind, "Invalid");
  assert.equal(throwsProtocol(() => decodeServerMsg(h(`86 ${id} 01 00 00 00 06 01 00 00 00 07 00 00 00 00`))).kind, "Invalid");
  const longPath = `86 ${id} 01 00 00 00 06 21 00 00 00` + " 01 00 00 00 00".repeat(33);
  assert.equal(throwsProtocol(() => decodeServerMsg(h(longPath))).kind, "TooDeep");
  const okPath = `86 ${id} 01 00 00 00 06 20 00 00 00` + " 01 00 00 00 00".repeat(32);
  assert.equal(decodeServerMsg(h(okPath)).ops[0].path.length, 32);
  const hugePath = `86 ${id} 01 00 00 00 03 ff ff ff ff 00 00 00 00`;
  assert.equal(throwsProtocol(() => decodeServerMsg(h(hugePath))).kind, "LengthAttack");
});

test("fuzz: mutated and random server messages only ever decode or give ProtocolErrors", () => {
  const next = rng(11);
  const seeds = serverSamples().map(encodeServerMsg);
  for (let i = 0; i < 30000; i++) {
    let b;
    if (i % 2 === 0) {
      b = seeds[next() % seeds.length].slice();
      const flips = 1 + (next() % 4);
      for (let f = 0; f < flips; f++) b[next() % b.length] = next() & 0xff;
      if (next() % 4 === 0) b = b.subarray(0, next() % b.length);
    } else {
      b = new Uint8Array(next() % 64);
      for (let j = 0; j < b.length; j++) b[j] = next() & 0xff;
      if (b.length > 0) b[0] = 0x81 + (next() % 8);
    }
    try {
      decodeServerMsg(b);
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `${hex(b)}: ${e}`);
    }
  }
});

test("attribute ops: encode/decode round trip and truncations", () => {
  const w = new Writer();
  writeAttrOps(w, opSamples());
  const b = w.finish();
  const r = new Reader(b);
  assert.deepEqual(readAttrOps(r), opSamples());
  r.finish();
  for (let cut = 0; cut < b.length; cut++) throwsProtocol(() => readAttrOps(new Reader(b.subarray(0, cut))));
});

test("attribute ops apply as attr_op.rs does", () => {
  const root = {};
  for (const op of opSamples().slice(0, 7)) applyAttrOp(root, op);
  assert.deepEqual(root, { inv: [] });
  // A path through a missing key, a ListSet past the end, a list op on a map.
  assert.throws(() => applyAttrOp(root, opSamples()[7]), (e) => e instanceof ApplyError && e.kind === "Replica" && /container/.test(e.message));
  assert.throws(() => applyAttrOp(root, { kind: "ListSet", path: ["inv"], index: 3, value: null }), /out of range \(len 0\)/);
  assert.throws(() => applyAttrOp(root, { kind: "ListAppend", path: [], value: null }), /name a list/);
  assert.throws(() => applyAttrOp(root, { kind: "MapSet", path: ["inv"], key: "k", value: 1 }), /name a map/);
  assert.throws(() => applyAttrOp(root, { kind: "MapSet", path: [0], key: "k", value: 1 }), /container/);
  // No-ops: MapDel of a missing key, ListPop of an empty list.
  applyAttrOp(root, { kind: "MapDel", path: [], key: "missing" });
  applyAttrOp(root, { kind: "ListPop", path: ["inv"] });
  assert.deepEqual(root, { inv: [] });
  // Nested paths through lists and maps; MapClear keeps the container's identity.
  const t = { a: [{ b: { c: 1, d: 2 } }] };
  const inner = t.a[0].b;
  applyAttrOp(t, { kind: "MapSet", path: ["a", 0, "b"], key: "c", value: 5 });
  applyAttrOp(t, { kind: "MapClear", path: ["a", 0, "b"] });
  assert.equal(t.a[0].b, inner);
  assert.deepEqual(t, { a: [{ b: {} }] });
  // "__proto__" walks nowhere and sets an own key.
  const p = {};
  assert.throws(() => applyAttrOp(p, { kind: "MapSet", path: ["__proto__"], key: "polluted", value: 1 }), ApplyError);
  applyAttrOp(p, { kind: "MapSet", path: [], key: "__proto__", value: { x: 1 } });
  assert.deepEqual(Object.keys(p), ["__proto__"]);
  assert.equal(({}).polluted, undefined);
  assert.equal(Object.getPrototypeOf(p), Object.prototype);
  // Inherited names are not keys.
  assert.throws(() => applyAttrOp({}, { kind: "MapSet", path: ["toString"], key: "x", value: 1 }), ApplyError);
});
