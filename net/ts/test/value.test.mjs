// Values <-> JS: the mapping rule of PROTOCOL.md 12, key order, limits, and hostile input to the value decoder.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeValue, encodeValue, Float, float, MAX_DEPTH } from "../dist/index.js";
import { DecodeBudget, readArgs, readValue } from "../dist/value.js";
import { Reader } from "../dist/wire.js";
import { h, hex, rng, throwsProtocol } from "./helpers.mjs";

const rt = (v) => decodeValue(encodeValue(v));
const tagOf = (v) => encodeValue(v)[0];

test("ints: number within ±(2^53−1), bigint beyond; both encode as int", () => {
  for (const n of [0, 1, -1, 42, 2 ** 53 - 1, -(2 ** 53 - 1)]) {
    assert.equal(tagOf(n), 3);
    assert.equal(rt(n), n);
  }
  for (const b of [2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n)]) {
    assert.equal(tagOf(b), 3);
    assert.equal(rt(b), b);
    assert.equal(typeof rt(b), "bigint");
  }
  assert.equal(rt(5n), 5, "a small bigint comes back as a number");
  assert.throws(() => encodeValue(2n ** 63n), RangeError);
  assert.throws(() => encodeValue(-(2n ** 63n) - 1n), RangeError);
  assert.equal(hex(encodeValue(-1)), "03ffffffffffffffff");
});

test("floats: non-integral numbers, -0, NaN, ±Infinity, unsafe integers and float() encode as float", () => {
  for (const f of [1.5, -0.25, Number.MIN_VALUE, Number.MAX_VALUE, Infinity, -Infinity, 2 ** 60, 1e300]) {
    assert.equal(tagOf(f), 4, String(f));
    assert.equal(rt(f), f);
  }
  assert.equal(tagOf(-0), 4);
  assert.ok(Object.is(rt(-0), -0));
  assert.ok(Number.isNaN(rt(NaN)));
  assert.equal(tagOf(float(2)), 4);
  assert.equal(hex(encodeValue(float(2))), "040000000000000040");
  assert.equal(rt(float(2)), 2, "an integral float decodes as a plain number");
  assert.ok(float(3) instanceof Float);
  assert.equal(float(3) * 2, 6, "Float has valueOf");
  // Any NaN bit pattern decodes to NaN.
  assert.ok(Number.isNaN(decodeValue(h("04 01 00 00 00 00 00 f8 7f"))));
});

test("nil, bools, strings, bytes, lists, maps", () => {
  assert.equal(rt(null), null);
  assert.equal(hex(encodeValue(undefined)), "00");
  assert.equal(rt(true), true);
  assert.equal(rt(false), false);
  assert.equal(rt("héllo 😀"), "héllo 😀");
  assert.equal(rt("\ufeffbom"), "\ufeffbom", "a leading BOM is kept");
  assert.deepEqual(rt(new Uint8Array([1, 2, 3])), new Uint8Array([1, 2, 3]));
  assert.deepEqual(rt(new Uint8Array([1, 2]).buffer), new Uint8Array([1, 2]));
  assert.deepEqual(rt(Buffer.from([9])), new Uint8Array([9]));
  assert.deepEqual(rt([1, [2, [3, { a: null }]]]), [1, [2, [3, { a: null }]]]);
  assert.deepEqual(rt({}), {});
  assert.deepEqual(rt(new Map([["k", 1]])), { k: 1 });
  assert.deepEqual(rt(Object.assign(Object.create(null), { z: 1 })), { z: 1 });
  assert.throws(() => encodeValue("\ud800"), TypeError, "a lone surrogate has no UTF-8");
  assert.throws(() => encodeValue(new Date()), TypeError);
  assert.throws(() => encodeValue(new Uint16Array(2)), TypeError);
  assert.throws(() => encodeValue(() => 1), TypeError);
  assert.throws(() => encodeValue(Symbol("x")), TypeError);
  assert.throws(() => encodeValue(new Map([[1, 2]])), TypeError);
});

test("map keys are sorted by their UTF-8 bytes, not UTF-16 order", () => {
  // UTF-16: "\uff61" (ff61) > "😀" (d83d...); UTF-8: ef bd a1 < f0 9f 98 80.
  const enc = encodeValue({ "😀": 1, "\uff61": 2, z: 3, a: 4, é: 5 });
  const r = new Reader(enc);
  r.u8("tag");
  r.u32("n");
  const keys = [];
  for (let i = 0; i < 5; i++) {
    keys.push(r.str("k"));
    readValue(r);
  }
  assert.deepEqual(keys, ["a", "z", "é", "\uff61", "😀"]);
  // Equal maps encode identically whatever the insertion order.
  assert.equal(hex(encodeValue({ b: 1, a: 2 })), hex(encodeValue({ a: 2, b: 1 })));
});

test("a __proto__ key is an ordinary key in both directions", () => {
  const enc = h("08 01 00 00 00 09 00 00 00" + hex(new TextEncoder().encode("__proto__")) + "08 01 00 00 00 01 00 00 00 78 03 01 00 00 00 00 00 00 00");
  const v = decodeValue(enc);
  assert.equal(Object.getPrototypeOf(v), Object.prototype, "the prototype is untouched");
  assert.deepEqual(Object.keys(v), ["__proto__"]);
  assert.equal(v["__proto__"].x, 1);
  assert.equal(({}).x, undefined, "nothing polluted");
  assert.equal(hex(encodeValue(v)), hex(enc), "and it encodes back the same");
  // The map keeps the last value of a duplicated key.
  assert.deepEqual(decodeValue(h("08 02 00 00 00 01 00 00 00 61 03 01 00 00 00 00 00 00 00 01 00 00 00 61 03 02 00 00 00 00 00 00 00")), { a: 2 });
});

test("nesting: 32 containers decode, 33 do not; the encoder refuses them too", () => {
  const nest = (n) => {
    let v = null;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };
  assert.deepEqual(rt(nest(MAX_DEPTH)), nest(MAX_DEPTH));
  assert.throws(() => encodeValue(nest(MAX_DEPTH + 1)), RangeError);
  const bytes = [];
  for (let i = 0; i <= MAX_DEPTH; i++) bytes.push(7, 1, 0, 0, 0);
  bytes.push(0);
  assert.equal(throwsProtocol(() => decodeValue(Uint8Array.from(bytes))).kind, "TooDeep");
  const cyclic = [];
  cyclic.push(cyclic);
  assert.throws(() => encodeValue(cyclic), RangeError, "a cycle hits the depth limit");
});

test("hostile values: truncations, unknown tags, impossible counts, bad UTF-8, trailing bytes", () => {
  const sample = encodeValue({ a: -5, b: [null, true, float(1.5)], c: new Uint8Array([1, 2, 3]), d: "héllo" });
  for (let cut = 0; cut < sample.length; cut++) {
    const e = throwsProtocol(() => decodeValue(sample.subarray(0, cut)), `cut ${cut}`);
    assert.ok(["Truncated", "LengthAttack"].includes(e.kind), e.kind);
  }
  assert.equal(throwsProtocol(() => decodeValue(h("99"))).kind, "UnknownTag");
  assert.equal(throwsProtocol(() => decodeValue(h("09"))).kind, "UnknownTag");
  assert.equal(throwsProtocol(() => decodeValue(h("07 ff ff ff ff"))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeValue(h("08 ff ff ff ff 00"))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeValue(h("06 ff ff ff ff"))).kind, "LengthAttack");
  assert.equal(throwsProtocol(() => decodeValue(h("05 02 00 00 00 ff fe"))).kind, "BadUtf8");
  assert.equal(throwsProtocol(() => decodeValue(h("08 01 00 00 00 01 00 00 00 c3 00"))).kind, "BadUtf8");
  assert.equal(throwsProtocol(() => decodeValue(h("00 00"))).kind, "Trailing");
  assert.equal(throwsProtocol(() => decodeValue(new Uint8Array(0))).kind, "Truncated");
});

test("the memory budget of value.rs: degenerate shapes are refused, big strings are not", () => {
  const nils = (n) => {
    const b = new Uint8Array(5 + n);
    b[0] = 7;
    new DataView(b.buffer).setUint32(1, n, true);
    return b;
  };
  assert.equal(decodeValue(nils(1000)).length, 1000, "under the floor: any shape");
  assert.equal(throwsProtocol(() => decodeValue(nils(1 << 20))).kind, "OverBudget");
  const n = 200_000;
  const map = new Uint8Array(5 + 5 * n);
  map[0] = 8;
  new DataView(map.buffer).setUint32(1, n, true);
  assert.equal(throwsProtocol(() => decodeValue(map)).kind, "OverBudget");
  const args = new Uint8Array(4 + (1 << 20));
  new DataView(args.buffer).setUint32(0, 1 << 20, true);
  assert.equal(throwsProtocol(() => readArgs(new Reader(args))).kind, "OverBudget");
  const s = "x".repeat(1 << 20);
  assert.equal(rt(s), s);
  assert.ok(new DecodeBudget(10).total === 80 + 65536);
});

test("fuzz: random bytes only ever give values or ProtocolErrors", () => {
  const next = rng(7);
  for (let i = 0; i < 20000; i++) {
    const len = next() % 48;
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) {
      // Bias towards small tags and small counts so containers actually parse.
      const x = next();
      b[j] = x % 3 === 0 ? x % 9 : x % 5 === 0 ? 0 : (x >>> 8) & 0xff;
    }
    try {
      decodeValue(b);
    } catch (e) {
      throwsProtocol(() => {
        throw e;
      }, `for ${hex(b)}`);
    }
  }
});
