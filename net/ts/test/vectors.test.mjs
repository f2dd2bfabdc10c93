// Byte-exact checks against PROTOCOL.md's vectors (sections 2.8, 4, 5, 11) and the official cacophony vector of Noise_NK_25519_ChaChaPoly_SHA256.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ClientChannel, decodeServerMsg, encodeClientMsg, encodeValue, float, fnv1a32, methodId, publicKeyOf } from "../dist/index.js";
import { RecordCodec } from "../dist/channel.js";
import { encodeServerMsg } from "../dist/messages.js";
import { NkInitiator, NkResponder } from "../dist/noise.js";
import { GateChannel } from "../dist/testing.js";
import { GATE_PUBLIC_HEX, GATE_SECRET, h, hex } from "./helpers.mjs";

test("fnv1a32 and method ids (PROTOCOL.md 5)", () => {
  const cases = [
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["foobar", 0xbf9cf968],
    ["echo", 0xd49dd484],
    ["whoami", 0xbaa8b444],
    ["relay_echo", 0xeaba7b8e],
    ["admin_reset", 0xd93f81bc],
  ];
  for (const [name, want] of cases) {
    assert.equal(methodId(name), want, name);
    assert.equal(fnv1a32(new TextEncoder().encode(name)), want, name);
  }
  const id = h("00112233445566778899aabbccddeeff");
  assert.equal(fnv1a32(id), 0xff138f15);
  assert.equal(fnv1a32(id) % 2, 1, "dispatcher index 1 of 2");
});

test("the value example of PROTOCOL.md 4", () => {
  const want = h(`08 02 00 00 00
    01 00 00 00 61  07 03 00 00 00 00 02  04 00 00 00 00 00 00 f8 3f
    01 00 00 00 62  03 01 00 00 00 00 00 00 00`);
  assert.equal(hex(encodeValue({ b: 1, a: [null, true, 1.5] })), hex(want));
  assert.equal(hex(encodeValue(new Map([["b", 1], ["a", [null, true, float(1.5)]]]))), hex(want));
});

test("the worked example of PROTOCOL.md 11, byte for byte", () => {
  const id = h("00112233445566778899aabbccddeeff");
  const call = encodeClientMsg({ type: "Call", target: id, method: methodId("echo"), args: ["hi"] });
  assert.equal(hex(call), hex(h("01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 84 d4 9d d4 01 00 00 00 05 02 00 00 00 68 69")));
  // Mode 0: the record is the flags byte and the message; on TCP its length (33) goes first.
  const [record] = new RecordCodec(undefined, false, 1 << 20).seal(call);
  assert.equal(hex(record), "00" + hex(call));
  assert.equal(record.length, 0x21);

  const reply = h("84 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 0a 00 00 00 65 63 68 6f 5f 72 65 70 6c 79 01 00 00 00 05 02 00 00 00 68 69");
  assert.deepEqual(decodeServerMsg(reply), { type: "Call", id, method: "echo_reply", args: ["hi"] });
  assert.equal(hex(encodeServerMsg({ type: "Call", id, method: "echo_reply", args: ["hi"] })), hex(reply));

  const create = h(`82 01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff
    07 00 00 00 41 63 63 6f 75 6e 74 08 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`);
  assert.equal(create.length, 50);
  assert.deepEqual(decodeServerMsg(create), {
    type: "CreateEntity",
    isPlayer: true,
    id,
    typeName: "Account",
    attrs: {},
    pos: { x: 0, y: 0, z: 0, yaw: 0 },
  });

  const cross = encodeClientMsg({ type: "Call", target: new Uint8Array(16).fill(0xab), method: 0x01020304, args: [5] });
  assert.equal(hex(cross), hex(h("01" + "ab".repeat(16) + "04030201 01000000 030500000000000000")));
  assert.equal(hex(encodeClientMsg({ type: "Heartbeat" })), "02");

  const welcome = h("81 02 00 01 93 b2 c4 d5 e6 a1 b2 c3 d4 e5 f6 07 18 29 3a 60 ea 00 00");
  assert.deepEqual(decodeServerMsg(welcome), {
    type: "Welcome",
    version: 2,
    clientId: h("0193b2c4d5e6a1b2c3d4e5f60718293a"),
    idleTimeoutMs: 60000,
  });
});

const V = {
  gatePublic: GATE_PUBLIC_HEX,
  clientEph: "74ed346d4cc835e1945348805e28c48b2b27818a685ae2ec64baff9d615e10a8",
  gateEph: "1fcfab352c8b5d27e4985deeab5c9c6d53db5bdcf40b2ce2d97149fe8eba3497",
  clientHello: "4f585702010083bbe66c9e5d7806ef48a133734e1e8ff7af5455f2685c3c6f0506d96dab1e1859720d5dfeb0267bfe2e44db27ca4796",
  serverHello: "4f58570200017e117f70dc634f0098d413b22001166e10992c7fdbd90a061d889a01a0da8b2e1d396f8de2863e4fdcb233e48964cf9fe9",
  clientRecord: "7950f5bcee7668fd2748f96b61b3988e1da7",
  gateRecord: "4b38c34604d828886fde8682ab849bfe09b1a5",
};

test("the handshake vectors of PROTOCOL.md 2.8", () => {
  assert.equal(hex(publicKeyOf(GATE_SECRET)), V.gatePublic);
  const client = new ClientChannel({ encrypt: true, serverKey: h(V.gatePublic), ephemeralSecret: h(V.clientEph) });
  const hello = client.start();
  assert.equal(hello.length, 54);
  assert.equal(hex(hello), V.clientHello);

  // The gate's side, from the document's client hello.
  const gate = new GateChannel({ encrypt: true, staticSecret: GATE_SECRET, ephemeralSecret: h(V.gateEph) });
  const { reply, refused } = gate.handleRecord(h(V.clientHello));
  assert.equal(refused, undefined);
  assert.equal(reply.length, 55);
  assert.equal(hex(reply), V.serverHello);

  // The client reads the document's server hello, then seals a Heartbeat as record 0.
  assert.deepEqual(client.handleRecord(h(V.serverHello)), []);
  assert.ok(client.isOpen);
  client.send(encodeClientMsg({ type: "Heartbeat" }));
  const [rec] = client.takeOutput();
  assert.equal(hex(rec), V.clientRecord);
  // The gate's first record opens to the message "hi".
  const [msg] = client.handleRecord(h(V.gateRecord));
  assert.equal(Buffer.from(msg).toString(), "hi");
  // And the fake gate produces the same record and reads the client's.
  assert.equal(hex(gate.seal(new TextEncoder().encode("hi"))[0]), V.gateRecord);
  assert.equal(hex(gate.handleRecord(h(V.clientRecord)).message), "02");
});

// The cacophony vector of Noise_NK_25519_ChaChaPoly_SHA256, from mcginty/snow
// tests/vectors/cacophony.txt (commit 8ac60f51cfe3e010c84f0a454cc575ad9204fa12).
const CACOPHONY_NK = {
  protocol_name: "Noise_NK_25519_ChaChaPoly_SHA256",
  init_prologue: "4a6f686e2047616c74",
  init_ephemeral: "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
  init_remote_static: "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
  resp_static: "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
  resp_ephemeral: "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
  handshake_hash: "2efa38a9c7c93ac98f3a097af25c2f58b9e7673787717bc27e98827118c2c1a5",
  messages: [
    { payload: "4c756477696720766f6e204d69736573", ciphertext: "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79448134d00711fdb390a0d178fa008f6d47d2891e5ea18ae136c3b4c23ac384efb0" },
    { payload: "4d757272617920526f746862617264", ciphertext: "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088438ea16e3701bc0d77744f117bee22451c9afa7f4cdbbcff00c04a8ee0913c88" },
    { payload: "462e20412e20486179656b", ciphertext: "a62de29ce27cb80245d440d986ed816c156e9d757d7008df2198b0" },
    { payload: "4361726c204d656e676572", ciphertext: "174a35f11c689f4530d7208618e0564ae12f2f50ba8eb4df5382ff" },
    { payload: "4a65616e2d426170746973746520536179", ciphertext: "337e475ebb8eae60f91974c4e455a5af38d1d8628d1803b160d60442874b0a1777" },
    { payload: "457567656e2042f6686d20766f6e2042617765726b", ciphertext: "047e80e060b7bb08b53c5a23dfe9920cae135b9d1dc6302fc475003062723700366346ac9d" },
  ],
};

test("the official cacophony vector of Noise_NK_25519_ChaChaPoly_SHA256", () => {
  const v = CACOPHONY_NK;
  assert.equal(hex(publicKeyOf(h(v.resp_static))), v.init_remote_static);
  const init = new NkInitiator(h(v.init_prologue), h(v.init_remote_static), h(v.init_ephemeral));
  const resp = new NkResponder(h(v.init_prologue), h(v.resp_static), h(v.resp_ephemeral));
  const [m0, m1, ...transport] = v.messages;

  const c0 = init.writeMessage1(h(m0.payload));
  assert.equal(hex(c0), m0.ciphertext);
  assert.equal(hex(resp.readMessage1(c0)), m0.payload);

  const { message: c1, transport: rt } = resp.writeMessage2(h(m1.payload));
  assert.equal(hex(c1), m1.ciphertext);
  const { payload: p1, transport: it } = init.readMessage2(c1);
  assert.equal(hex(p1), m1.payload);
  assert.equal(hex(it.handshakeHash), v.handshake_hash);
  assert.equal(hex(rt.handshakeHash), v.handshake_hash);

  // Transport messages alternate: initiator, responder, initiator, ...
  transport.forEach((m, i) => {
    const [sender, receiver] = i % 2 === 0 ? [it, rt] : [rt, it];
    const c = sender.send.encryptWithAd(new Uint8Array(0), h(m.payload));
    assert.equal(hex(c), m.ciphertext, `transport message ${i + 2}`);
    assert.equal(hex(receiver.recv.decryptWithAd(new Uint8Array(0), c)), m.payload);
  });
});
