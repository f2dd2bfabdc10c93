// Values (PROTOCOL.md section 4) <-> JavaScript: the mapping rule of PROTOCOL.md section 12, the encoder and the bounded decoder.

import { decodeUtf8 } from "./bytes.js";
import { ProtocolError } from "./errors.js";
import { Reader, Writer } from "./wire.js";

/** Deepest nesting of lists and maps: a container at depth >= 32 is refused (`TooDeep`). */
export const MAX_DEPTH = 32;

/** Decoding memory allowed per input byte, past {@link DECODE_BUDGET_FLOOR} (as value.rs). */
export const DECODE_BUDGET_PER_BYTE = 8;
/** Decoding memory any input may take whatever its shape. */
export const DECODE_BUDGET_FLOOR = 64 * 1024;
/** Cost counted per decoded value (value.rs: `size_of::<Value>()`). */
const VALUE_COST = 32;
/** Cost counted per map entry besides its value (value.rs: `MAP_ENTRY_COST`). */
const MAP_ENTRY_COST = 40;

const TAG_NIL = 0;
const TAG_FALSE = 1;
const TAG_TRUE = 2;
const TAG_INT = 3;
const TAG_FLOAT = 4;
const TAG_STR = 5;
const TAG_BYTES = 6;
const TAG_LIST = 7;
const TAG_MAP = 8;

/** A map value: string keys. */
export interface ValueMap {
  [key: string]: Value;
}

/**
 * A decoded value. nil -> `null`, bool -> `boolean`, int -> `number` when within
 * ±(2^53 − 1) else `bigint`, float -> `number`, string -> `string`, bytes -> `Uint8Array`,
 * list -> array, map -> plain object.
 */
export type Value = null | boolean | number | bigint | string | Uint8Array | Value[] | ValueMap;

/**
 * A float to encode as a float whatever its value (a plain integral `number` such as `2` is
 * encoded as an int). Made by {@link float}.
 */
export class Float {
  readonly value: number;
  constructor(value: number) {
    if (typeof value !== "number") throw new TypeError("float() takes a number");
    this.value = value;
  }
  valueOf(): number {
    return this.value;
  }
}

/** Marks a number to be encoded as a float (`float(2)` is the float 2.0, not the int 2). */
export function float(x: number): Float {
  return new Float(x);
}

/** What the encoder accepts (see {@link encodeValue}). */
export type Encodable =
  | Value
  | undefined
  | Float
  | ArrayBuffer
  | readonly Encodable[]
  | ReadonlyMap<string, Encodable>
  | { readonly [key: string]: Encodable };

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Sets `o[k] = v` as an own data property, even for the key `__proto__`. */
export function setKey(o: ValueMap, k: string, v: Value): void {
  if (k === "__proto__") {
    Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  } else {
    o[k] = v;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/**
 * Appends one value. Rules: `null`/`undefined` -> nil; boolean -> bool; bigint -> int
 * (RangeError outside i64); number -> int when it is a safe integer (|x| <= 2^53 − 1, not −0),
 * else float; {@link Float} -> float; string -> string; Uint8Array / ArrayBuffer -> bytes;
 * array -> list; plain object or `Map` with string keys -> map (keys sorted by their UTF-8
 * bytes). Anything else is a TypeError; nesting past {@link MAX_DEPTH} a RangeError.
 */
export function writeValue(w: Writer, v: Encodable, depth = 0): void {
  if (v === null || v === undefined) {
    w.u8(TAG_NIL);
    return;
  }
  switch (typeof v) {
    case "boolean":
      w.u8(v ? TAG_TRUE : TAG_FALSE);
      return;
    case "number":
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        w.u8(TAG_INT);
        w.i64(BigInt(v));
      } else {
        w.u8(TAG_FLOAT);
        w.f64(v);
      }
      return;
    case "bigint":
      if (v < I64_MIN || v > I64_MAX) throw new RangeError(`${v} does not fit in a 64-bit int`);
      w.u8(TAG_INT);
      w.i64(v);
      return;
    case "string":
      w.u8(TAG_STR);
      w.str(v);
      return;
    case "object":
      break;
    default:
      throw new TypeError(`a ${typeof v} cannot be encoded as a value`);
  }
  if (v instanceof Float) {
    w.u8(TAG_FLOAT);
    w.f64(v.value);
    return;
  }
  if (v instanceof Uint8Array) {
    w.u8(TAG_BYTES);
    w.bytes(v);
    return;
  }
  if (v instanceof ArrayBuffer) {
    w.u8(TAG_BYTES);
    w.bytes(new Uint8Array(v));
    return;
  }
  if (ArrayBuffer.isView(v)) {
    throw new TypeError("only Uint8Array (or ArrayBuffer) is encoded as bytes; convert other typed arrays first");
  }
  if (depth >= MAX_DEPTH) throw new RangeError(`value nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(v)) {
    const list = v as readonly Encodable[];
    w.u8(TAG_LIST);
    w.u32(list.length);
    for (const e of list) writeValue(w, e, depth + 1);
    return;
  }
  let entries: [string, Encodable][];
  if (v instanceof Map) {
    entries = [];
    for (const [k, e] of v as ReadonlyMap<unknown, Encodable>) {
      if (typeof k !== "string") throw new TypeError("map keys must be strings");
      entries.push([k, e]);
    }
  } else if (isPlainObject(v)) {
    entries = Object.entries(v as { readonly [key: string]: Encodable });
  } else {
    const name = (v as { constructor?: { name?: string } }).constructor?.name ?? "object";
    throw new TypeError(`a ${name} cannot be encoded as a value (use a plain object, an array or a Uint8Array)`);
  }
  const keyed = entries.map(([k, e]) => {
    const kw = new Writer(k.length + 4);
    kw.str(k);
    return { key: kw.finish(), value: e };
  });
  keyed.sort((a, b) => compareBytes(a.key, b.key));
  w.u8(TAG_MAP);
  w.u32(keyed.length);
  for (const { key, value } of keyed) {
    w.raw(key);
    writeValue(w, value, depth + 1);
  }
}

/** One value's encoding. */
export function encodeValue(v: Encodable): Uint8Array {
  const w = new Writer();
  writeValue(w, v);
  return w.finish();
}

/** An argument list: `u32` count, then each value at depth 0. */
export function writeArgs(w: Writer, args: readonly Encodable[]): void {
  w.u32(args.length);
  for (const a of args) writeValue(w, a);
}

/** Memory a message may spend on values: `8 x n + 65 536` for `n` input bytes. */
export class DecodeBudget {
  private left: number;
  readonly total: number;
  constructor(inputLen: number) {
    this.total = inputLen * DECODE_BUDGET_PER_BYTE + DECODE_BUDGET_FLOOR;
    this.left = this.total;
  }
  spend(n: number): void {
    if (n > this.left) {
      throw new ProtocolError("OverBudget", `values would take more than ${this.total} bytes of memory to decode`);
    }
    this.left -= n;
  }
}

function readAt(r: Reader, depth: number, budget: DecodeBudget): Value {
  const tag = r.u8("value tag");
  switch (tag) {
    case TAG_NIL:
      return null;
    case TAG_FALSE:
      return false;
    case TAG_TRUE:
      return true;
    case TAG_INT: {
      const i = r.i64("int value");
      return i >= -9007199254740991n && i <= 9007199254740991n ? Number(i) : i;
    }
    case TAG_FLOAT:
      return r.f64("float value");
    case TAG_STR: {
      const raw = r.bytes("string value");
      const s = decodeUtf8(raw);
      if (s === undefined) throw new ProtocolError("BadUtf8", "invalid UTF-8 in string value");
      budget.spend(raw.length);
      return s;
    }
    case TAG_BYTES: {
      const b = r.bytes("bytes value");
      budget.spend(b.length);
      return b.slice();
    }
    case TAG_LIST:
    case TAG_MAP:
      break;
    default:
      throw new ProtocolError("UnknownTag", `unknown value tag 0x${tag.toString(16).padStart(2, "0")}`);
  }
  if (depth >= MAX_DEPTH) throw new ProtocolError("TooDeep", `value nested deeper than ${MAX_DEPTH} levels`);
  if (tag === TAG_LIST) {
    const n = r.count("list length", 1);
    budget.spend(n * VALUE_COST);
    const l: Value[] = [];
    for (let i = 0; i < n; i++) l.push(readAt(r, depth + 1, budget));
    return l;
  }
  const n = r.count("map length", 5);
  const m: ValueMap = {};
  for (let i = 0; i < n; i++) {
    const before = r.remaining;
    const k = r.str("map key");
    // value.rs counts the key's UTF-8 length: the bytes just consumed minus the u32.
    budget.spend(before - r.remaining - 4 + MAP_ENTRY_COST + VALUE_COST);
    setKey(m, k, readAt(r, depth + 1, budget));
  }
  return m;
}

/** Reads one value, paying its slot and contents from `budget` (shared by a message). */
export function readValue(r: Reader, budget: DecodeBudget = new DecodeBudget(r.remaining)): Value {
  budget.spend(VALUE_COST);
  return readAt(r, 0, budget);
}

/** Reads an argument list (`u32` count + values) with one budget for all of it. */
export function readArgs(r: Reader): Value[] {
  const budget = new DecodeBudget(r.remaining);
  const n = r.count("argument count", 1);
  budget.spend(n * VALUE_COST);
  const out: Value[] = [];
  for (let i = 0; i < n; i++) out.push(readAt(r, 0, budget));
  return out;
}

/** Decodes exactly one value from `bytes` (trailing bytes are an error). */
export function decodeValue(bytes: Uint8Array): Value {
  const r = new Reader(bytes);
  const v = readValue(r);
  r.finish();
  return v;
}

/** True for a decoded map (a plain object, not an array or bytes). */
export function isValueMap(v: Value | undefined): v is ValueMap {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
