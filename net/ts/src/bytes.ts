// Byte helpers: hex, strict UTF-8, concatenation, 16-byte ids and the fnv1a32 method ids of PROTOCOL.md section 5.

const HEX = "0123456789abcdef";

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b >> 4]! + HEX[b & 15]!;
  return s;
}

/** Bytes from hex digits (upper or lower case, even count); throws TypeError otherwise. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not a hex string: ${JSON.stringify(hex.slice(0, 80))}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** True if both arrays hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const encoder = new TextEncoder();
// fatal: invalid UTF-8 throws; ignoreBOM: a leading U+FEFF is kept as a character.
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lossyDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * UTF-8 of a string. A string with a lone surrogate has no UTF-8 form: TypeError (rather than
 * a silent U+FFFD).
 */
export function utf8(s: string): Uint8Array {
  if (LONE_SURROGATE.test(s)) {
    throw new TypeError("the string holds a lone surrogate, which has no UTF-8 encoding");
  }
  return encoder.encode(s);
}

/** Decodes UTF-8, or returns undefined when the bytes are not valid UTF-8. */
export function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(b);
  } catch {
    return undefined;
  }
}

/** Decodes UTF-8, replacing invalid sequences (for reason texts only). */
export function decodeUtf8Lossy(b: Uint8Array): string {
  return lossyDecoder.decode(b);
}

/** An entity or client id: 16 raw bytes. Shown as 32 lowercase hex digits, byte 0 first. */
export type Id = Uint8Array;

/** Bytes in an id. */
export const ID_LEN = 16;

/** The all-zero id (`NIL`: "none"). */
export const NIL_ID: Id = new Uint8Array(ID_LEN);

/** The 32-hex-digit form of an id. */
export function idToHex(id: Id): string {
  if (id.length !== ID_LEN) throw new TypeError(`an id is 16 bytes, not ${id.length}`);
  return toHex(id);
}

/** An id from exactly 32 hex digits (upper case accepted); TypeError otherwise. */
export function idFromHex(hex: string): Id {
  if (hex.length !== 2 * ID_LEN) throw new TypeError(`an id is 32 hex digits, got ${hex.length} characters`);
  return fromHex(hex);
}

/** An id given as 32 hex digits or 16 bytes, as 16 bytes (a copy). */
export function toId(id: string | Uint8Array): Id {
  if (typeof id === "string") return idFromHex(id);
  if (!(id instanceof Uint8Array) || id.length !== ID_LEN) throw new TypeError("an id is 16 bytes or 32 hex digits");
  return new Uint8Array(id);
}

/** FNV-1a 32-bit (PROTOCOL.md section 5) of bytes, or of a string's UTF-8. */
export function fnv1a32(data: Uint8Array | string): number {
  const bytes = typeof data === "string" ? utf8(data) : data;
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The numeric id of a method: fnv1a32 of its UTF-8 name. */
export function methodId(name: string): number {
  return fnv1a32(name);
}
