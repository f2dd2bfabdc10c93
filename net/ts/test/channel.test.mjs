// The channel (PROTOCOL.md 2.4-2.6) against the test gate: handshakes, fragmentation and reassembly both ways, refusals, hostile records and hellos.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ClientChannel, HandshakeError, MAX_FRAGMENT, publicKeyOf } from "../dist/index.js";
import { FLAG_LZ4, FLAG_MORE, RecordCodec } from "../dist/channel.js";
import { GateChannel } from "../dist/testing.js";
import { GATE_SECRET, h, hex, rng, throwsProtocol } from "./helpers.mjs";

const GATE_PUBLIC = publicKeyOf(GATE_SECRET);

function sample(len, seed) {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i % 97) ^ seed ^ Math.floor(i / 1000);
  return b;
}

/** A client and a gate channel after the handshake. */
function pair(encrypt, { maxMessage } = {}) {
  const client = new ClientChannel({ encrypt, serverKey: encrypt ? GATE_PUBLIC : undefined, maxMessage });
  const gate = new GateChannel({ encrypt, staticSecret: GATE_SECRET });
  const { reply, refused } = gate.handleRecord(client.start());
  assert.equal(refused, undefined);
  assert.deepEqual(client.handleRecord(reply), []);
  assert.ok(client.isOpen && gate.isOpen);
  return { client, gate };
}

for (const encrypt of [false, true]) {
  test(`mode ${encrypt ? 1 : 0}: messages of every size cross both ways, cut into fragments and joined again`, () => {
    const { client, gate } = pair(encrypt);
    const sizes = [1, 63, 64, 1000, MAX_FRAGMENT, MAX_FRAGMENT + 1, 3 * MAX_FRAGMENT, 300_000];
    sizes.forEach((n, i) => {
      const m = sample(n, i);
      client.send(m);
      const records = client.takeOutput();
      assert.equal(records.length, Math.max(1, Math.ceil(n / MAX_FRAGMENT)), `records for ${n} bytes`);
      for (const r of records) assert.ok(r.length <= 65535, "a record is at most 65535 bytes");
      const got = records.map((r) => gate.handleRecord(r).message).filter(Boolean);
      assert.equal(got.length, 1);
      assert.equal(hex(got[0]), hex(m));

      const back = gate.seal(m);
      assert.equal(back.length, records.length);
      const msgs = back.flatMap((r) => client.handleRecord(r));
      assert.equal(msgs.length, 1);
      assert.equal(hex(msgs[0]), hex(m));
    });
    // Exactly MAX_FRAGMENT + 1 bytes: the first record is full and carries MORE.
    if (!encrypt) {
      const [first, last] = gate.seal(sample(MAX_FRAGMENT + 1, 0));
      assert.equal(first.length, 65519);
      assert.equal(first[0], FLAG_MORE);
      assert.equal(last.length, 2);
      assert.equal(last[0], 0);
    }
  });
}

test("messages queued before the handshake leave after it, in order", () => {
  const client = new ClientChannel({ encrypt: true, serverKey: GATE_PUBLIC });
  const gate = new GateChannel({ encrypt: true, staticSecret: GATE_SECRET });
  const hello = client.start();
  client.send(h("02"));
  client.send(sample(70_000, 3));
  assert.deepEqual(client.takeOutput(), []);
  client.handleRecord(gate.handleRecord(hello).reply);
  const msgs = client.takeOutput().map((r) => gate.handleRecord(r).message).filter(Boolean);
  assert.deepEqual(msgs.map(hex), [hex(h("02")), hex(sample(70_000, 3))]);
});

test("hostile records from the gate are ProtocolErrors", () => {
  const cases = [
    ["empty record", new Uint8Array(0), "Record"],
    ["flags only", h("00"), "Record"],
    ["unknown flag", h("80 01"), "Record"],
    ["flag 0x04", h("04 01"), "Record"],
    ["lz4 without the feature", h("01 0a 00 00 00 00"), "Record"],
    ["fragment over MAX_FRAGMENT", new Uint8Array(MAX_FRAGMENT + 2), "Record"],
    ["record over 65535", new Uint8Array(70_000), "Record"],
  ];
  for (const [what, rec, kind] of cases) {
    const { client } = pair(false);
    assert.equal(throwsProtocol(() => client.handleRecord(rec), what).kind, kind, what);
    // A failed channel refuses everything after.
    throwsProtocol(() => client.handleRecord(h("00 81")));
  }
  // Fragments that disagree on LZ4; an empty message made of fragments.
  let { client } = pair(false);
  client.handleRecord(h("02 01 02"));
  throwsProtocol(() => client.handleRecord(h("01 03")));
  ({ client } = pair(false));
  client.handleRecord(h("02"));
  assert.equal(throwsProtocol(() => client.handleRecord(h("00"))).kind, "Record");
});

test("the message size limit counts across fragments, before buffering", () => {
  const { client } = pair(false, { maxMessage: 100 });
  assert.deepEqual(client.handleRecord(Uint8Array.from([FLAG_MORE, ...new Uint8Array(60).fill(1)])), []);
  assert.equal(throwsProtocol(() => client.handleRecord(Uint8Array.from([0, ...new Uint8Array(41).fill(1)]))).kind, "TooLarge");
  const ok = pair(false, { maxMessage: 100 }).client;
  ok.handleRecord(Uint8Array.from([FLAG_MORE, ...new Uint8Array(60).fill(1)]));
  assert.equal(ok.handleRecord(Uint8Array.from([0, ...new Uint8Array(40).fill(1)]))[0].length, 100, "exactly the maximum");
});

test("encrypted records: tampering, replay and short records fail", () => {
  let { client, gate } = pair(true);
  const rec = gate.seal(h("81"))[0];
  const bad = rec.slice();
  bad[3] ^= 1;
  assert.equal(throwsProtocol(() => client.handleRecord(bad)).kind, "Auth");
  ({ client, gate } = pair(true));
  const r0 = gate.seal(h("aa"))[0];
  assert.equal(hex(client.handleRecord(r0)[0]), "aa");
  assert.equal(throwsProtocol(() => client.handleRecord(r0)).kind, "Auth", "a replay");
  for (const n of [0, 5, 16]) {
    const p = pair(true);
    throwsProtocol(() => p.client.handleRecord(new Uint8Array(n)), `${n} bytes`);
  }
  // A valid record with unknown flags inside the encryption.
  ({ client, gate } = pair(true));
  assert.equal(throwsProtocol(() => client.handleRecord(gate.sealRaw(0x40, h("81")))).kind, "Record");
  ({ client, gate } = pair(true));
  assert.equal(throwsProtocol(() => client.handleRecord(gate.sealRaw(FLAG_LZ4, h("0100000000")))).kind, "Record");
});

test("refusals become HandshakeErrors with the status and reason", () => {
  // Wrong key: the gate answers status 4.
  const wrong = new ClientChannel({ encrypt: true, serverKey: publicKeyOf(new Uint8Array(32).fill(9)) });
  const gate = new GateChannel({ encrypt: true, staticSecret: GATE_SECRET });
  const r = gate.handleRecord(wrong.start());
  assert.equal(r.refused, true);
  const e = throwsProtocol(() => wrong.handleRecord(r.reply));
  assert.ok(e instanceof HandshakeError);
  assert.equal(e.status, 4);
  assert.equal(e.statusName, "HandshakeFailed");
  assert.match(e.reason, /server key/);
  // Mode mismatch both ways: status 3 with the gate's mode.
  for (const [gateEncrypt, clientEncrypt] of [
    [true, false],
    [false, true],
  ]) {
    const c = new ClientChannel({ encrypt: clientEncrypt, serverKey: GATE_PUBLIC });
    const g = new GateChannel({ encrypt: gateEncrypt, staticSecret: GATE_SECRET });
    const err = throwsProtocol(() => c.handleRecord(g.handleRecord(c.start()).reply));
    assert.equal(err.status, 3);
    assert.equal(err.gateMode, gateEncrypt ? 1 : 0);
  }
  // Status 2 (another version) and an unknown status (taken as 1).
  const c2 = new ClientChannel({ encrypt: false });
  c2.start();
  const e2 = throwsProtocol(() => c2.handleRecord(h("4f 58 57 02 02 00 6e 6f")));
  assert.equal(e2.status, 2);
  assert.equal(e2.reason, "no");
  const c3 = new ClientChannel({ encrypt: false });
  c3.start();
  assert.equal(throwsProtocol(() => c3.handleRecord(h("4f 58 57 02 09 00 ff"))).status, 1);
});

test("hostile server hellos are HandshakeErrors", () => {
  const replies = [
    "",
    "4f585702",
    "4f58570200000 1".replace(" ", ""),
    "4f5857010001",
    "4f5857020001" + "00".repeat(49),
    "4f5857020001" + "00".repeat(3),
    "4f5857020000" + "00",
    "485454502f312e31203230302020",
  ];
  for (const reply of replies) {
    const c = new ClientChannel({ encrypt: true, serverKey: GATE_PUBLIC });
    c.start();
    const e = throwsProtocol(() => c.handleRecord(h(reply)), reply);
    assert.ok(e instanceof HandshakeError, reply);
  }
  // A plain gate that accepts a feature the client did not offer; trailing bytes after it.
  for (const reply of ["4f585702000001", "4f58570200000000"]) {
    const c = new ClientChannel({ encrypt: false });
    c.start();
    assert.ok(throwsProtocol(() => c.handleRecord(h(reply))) instanceof HandshakeError);
  }
  // A record before the hello.
  assert.equal(throwsProtocol(() => new ClientChannel({ encrypt: false }).handleRecord(h("00"))).kind, "Hello");
  // An encrypted channel needs a 32-byte key.
  assert.throws(() => new ClientChannel({ encrypt: true }), TypeError);
});

test("fuzz: random records to an open channel and random server hellos only give ProtocolErrors", () => {
  const next = rng(5);
  for (let i = 0; i < 3000; i++) {
    const b = new Uint8Array(next() % 80);
    for (let j = 0; j < b.length; j++) b[j] = next() & 0xff;
    if (b.length > 0 && i % 2 === 0) b[0] &= 3;
    const { client } = pair(false, { maxMessage: 1000 });
    try {
      client.handleRecord(b);
    } catch (e) {
      throwsProtocol(() => {
        throw e;
      });
    }
    const fresh = new ClientChannel({ encrypt: i % 3 === 0, serverKey: GATE_PUBLIC });
    fresh.start();
    if (i % 4 === 0 && b.length >= 6) b.set([0x4f, 0x58, 0x57, 2, 0, i % 3 === 0 ? 1 : 0]);
    try {
      fresh.handleRecord(b);
    } catch (e) {
      throwsProtocol(() => {
        throw e;
      });
    }
  }
});

test("RecordCodec seals an empty message as one flags-only record (never sent by the client)", () => {
  const recs = new RecordCodec(undefined, false, 10).seal(new Uint8Array(0));
  assert.deepEqual(recs.map(hex), ["00"]);
});
