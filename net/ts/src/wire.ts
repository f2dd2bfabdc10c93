// Bounds-checked little-endian Reader and growable Writer (PROTOCOL.md section 3); every decoding failure is a ProtocolError.

import { decodeUtf8, utf8 } from "./bytes.js";
import { ProtocolError } from "./errors.js";

/** A cursor over one received message. Every read is bounds-checked. */
export class Reader {
  private readonly buf: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Bytes not yet consumed. */
  get remaining(): number {
    return this.buf.length - this.at;
  }

  /** ProtocolError `Trailing` unless every byte was consumed. */
  finish(): void {
    if (this.remaining !== 0) throw new ProtocolError("Trailing", `${this.remaining} trailing bytes after the message`);
  }

  private need(n: number, what: string): number {
    if (this.remaining < n) {
      throw new ProtocolError("Truncated", `truncated message: needed ${n - this.remaining} more bytes for ${what}`);
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  /** The next `n` bytes, as a view into the message. */
  take(n: number, what: string): Uint8Array {
    const at = this.need(n, what);
    return this.buf.subarray(at, at + n);
  }

  u8(what: string): number {
    return this.view.getUint8(this.need(1, what));
  }

  u16(what: string): number {
    return this.view.getUint16(this.need(2, what), true);
  }

  u32(what: string): number {
    return this.view.getUint32(this.need(4, what), true);
  }

  i64(what: string): bigint {
    return this.view.getBigInt64(this.need(8, what), true);
  }

  f32(what: string): number {
    return this.view.getFloat32(this.need(4, what), true);
  }

  f64(what: string): number {
    return this.view.getFloat64(this.need(8, what), true);
  }

  /** A 16-byte id (a copy). */
  id(what: string): Uint8Array {
    return this.take(16, what).slice();
  }

  /** A `u32` count, refused when `count x minSize` exceeds the bytes left (`LengthAttack`). */
  count(what: string, minSize: number): number {
    const n = this.u32(what);
    if (n * Math.max(minSize, 1) > this.remaining) {
      throw new ProtocolError("LengthAttack", `${what} claims ${n} elements but only ${this.remaining} bytes remain`);
    }
    return n;
  }

  /** `u32` length + raw bytes (a view into the message). */
  bytes(what: string): Uint8Array {
    return this.take(this.count(what, 1), what);
  }

  /** `u32` length + UTF-8; invalid UTF-8 is `BadUtf8`. */
  str(what: string): string {
    const s = decodeUtf8(this.bytes(what));
    if (s === undefined) throw new ProtocolError("BadUtf8", `invalid UTF-8 in ${what}`);
    return s;
  }
}

/** A growable little-endian byte writer. */
export class Writer {
  private buf: Uint8Array;
  private view: DataView;
  private len = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(Math.max(capacity, 16));
    this.view = new DataView(this.buf.buffer);
  }

  private reserve(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      let cap = Math.max(this.buf.length * 2, 64);
      while (cap < at + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.len += n;
    return at;
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  get length(): number {
    return this.len;
  }

  u8(v: number): void {
    const at = this.reserve(1); // may replace this.view
    this.view.setUint8(at, v);
  }

  u16(v: number): void {
    const at = this.reserve(2); // may replace this.view
    this.view.setUint16(at, v, true);
  }

  u32(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${v} does not fit in a u32`);
    const at = this.reserve(4); // may replace this.view
    this.view.setUint32(at, v, true);
  }

  i64(v: bigint): void {
    const at = this.reserve(8); // may replace this.view
    this.view.setBigInt64(at, v, true);
  }

  f32(v: number): void {
    const at = this.reserve(4); // may replace this.view
    this.view.setFloat32(at, v, true);
  }

  f64(v: number): void {
    const at = this.reserve(8); // may replace this.view
    this.view.setFloat64(at, v, true);
  }

  raw(b: Uint8Array): void {
    const at = this.reserve(b.length); // may replace this.buf
    this.buf.set(b, at);
  }

  /** `u32` length + bytes. */
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.raw(b);
  }

  /** `u32` length + UTF-8 (TypeError for a string with a lone surrogate). */
  str(s: string): void {
    this.bytes(utf8(s));
  }
}
