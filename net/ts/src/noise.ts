// Noise_NK_25519_ChaChaPoly_SHA256 (Noise Protocol Framework, revision 34) over @noble primitives: handshake for both roles and transport CipherStates.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { concatBytes } from "./bytes.js";

/** The protocol name; exactly 32 bytes (HASHLEN), so it is the initial hash as is. */
export const NOISE_PROTOCOL_NAME = "Noise_NK_25519_ChaChaPoly_SHA256";
/** Bytes of a DH public key. */
export const DHLEN = 32;
/** Bytes of an AEAD tag. */
export const TAGLEN = 16;

const EMPTY = new Uint8Array(0);

/** The X25519 public key of a 32-byte secret (X25519 clamps it). */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secret);
}

/** 32 random bytes from the platform's CSPRNG (`crypto.getRandomValues`). */
export function randomSecret(): Uint8Array {
  const k = new Uint8Array(32);
  globalThis.crypto.getRandomValues(k);
  return k;
}

function dh(secret: Uint8Array, pub: Uint8Array): Uint8Array {
  return x25519.getSharedSecret(secret, pub);
}

function hkdf(ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmac(sha256, ck, ikm);
  const o1 = hmac(sha256, temp, Uint8Array.of(1));
  const o2 = hmac(sha256, temp, concatBytes(o1, Uint8Array.of(2)));
  return [o1, o2];
}

/** The Noise nonce: 4 zero bytes, then the 64-bit counter little-endian. */
function nonceBytes(n: number): Uint8Array {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setBigUint64(4, BigInt(n), true);
  return b;
}

/** A Noise CipherState: a key and a counter nonce (Noise spec 5.1). */
export class CipherState {
  private key: Uint8Array | undefined;
  private n = 0;

  constructor(key?: Uint8Array) {
    this.key = key;
  }

  hasKey(): boolean {
    return this.key !== undefined;
  }

  /** Messages processed so far (the next nonce). */
  get nonce(): number {
    return this.n;
  }

  private nextNonce(): Uint8Array {
    // 2^64 - 1 is reserved; a JS client cannot come near 2^53 records anyway.
    if (this.n >= Number.MAX_SAFE_INTEGER) throw new Error("noise nonce exhausted");
    return nonceBytes(this.n++);
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (!this.key) return plaintext.slice();
    return chacha20poly1305(this.key, this.nextNonce(), ad).encrypt(plaintext);
  }

  /** Throws when the ciphertext does not authenticate (the nonce does not advance then). */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (!this.key) return ciphertext.slice();
    const nonce = nonceBytes(this.n);
    const pt = chacha20poly1305(this.key, nonce, ad).decrypt(ciphertext);
    this.n++;
    return pt;
  }
}

/** The SymmetricState of the Noise spec (5.2). */
class SymmetricState {
  ck: Uint8Array;
  h: Uint8Array;
  cipher = new CipherState();

  constructor() {
    const name = new TextEncoder().encode(NOISE_PROTOCOL_NAME);
    this.h = name.length === 32 ? name : sha256(name);
    this.ck = this.h;
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(concatBytes(this.h, data));
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, k] = hkdf(this.ck, ikm);
    this.ck = ck;
    this.cipher = new CipherState(k);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const c = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(c);
    return c;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const p = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return p;
  }

  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf(this.ck, EMPTY);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

/** The transport keys after the handshake: `send` for own messages, `recv` for the peer's. */
export interface NoiseTransport {
  send: CipherState;
  recv: CipherState;
  /** The handshake hash (channel binding). */
  handshakeHash: Uint8Array;
}

/**
 * The initiator (client) of Noise NK: `<- s`, `...`, `-> e, es`, `<- e, ee`.
 * `ephemeralSecret` is for tests (fixed vectors); by default it is random.
 */
export class NkInitiator {
  private readonly ss = new SymmetricState();
  private readonly rs: Uint8Array;
  private readonly e: Uint8Array;
  private step = 0;

  constructor(prologue: Uint8Array, serverPublic: Uint8Array, ephemeralSecret: Uint8Array = randomSecret()) {
    if (serverPublic.length !== DHLEN) throw new TypeError("the server's public key is 32 bytes");
    if (ephemeralSecret.length !== 32) throw new TypeError("an ephemeral secret is 32 bytes");
    this.rs = serverPublic.slice();
    this.e = ephemeralSecret.slice();
    this.ss.mixHash(prologue);
    this.ss.mixHash(this.rs);
  }

  /** Message 1: `e, es`, then the encrypted payload (48 bytes for an empty payload). */
  writeMessage1(payload: Uint8Array = EMPTY): Uint8Array {
    if (this.step !== 0) throw new Error("message 1 was already written");
    this.step = 1;
    const epub = publicKeyOf(this.e);
    this.ss.mixHash(epub);
    this.ss.mixKey(dh(this.e, this.rs));
    return concatBytes(epub, this.ss.encryptAndHash(payload));
  }

  /** Reads message 2 (`e, ee` + encrypted payload): the payload and the transport keys. Throws on failure. */
  readMessage2(msg: Uint8Array): { payload: Uint8Array; transport: NoiseTransport } {
    if (this.step !== 1) throw new Error("message 2 before message 1");
    this.step = 2;
    if (msg.length < DHLEN + TAGLEN) throw new Error("noise message 2 is too short");
    const re = msg.subarray(0, DHLEN);
    this.ss.mixHash(re);
    this.ss.mixKey(dh(this.e, re));
    const payload = this.ss.decryptAndHash(msg.subarray(DHLEN));
    const [c1, c2] = this.ss.split();
    return { payload, transport: { send: c1, recv: c2, handshakeHash: this.ss.h } };
  }
}

/** The responder (gate) of Noise NK: for tests and fake gates. */
export class NkResponder {
  private readonly ss = new SymmetricState();
  private readonly s: Uint8Array;
  private readonly e: Uint8Array;
  private re: Uint8Array | undefined;

  constructor(prologue: Uint8Array, staticSecret: Uint8Array, ephemeralSecret: Uint8Array = randomSecret()) {
    this.s = staticSecret.slice();
    this.e = ephemeralSecret.slice();
    this.ss.mixHash(prologue);
    this.ss.mixHash(publicKeyOf(this.s));
  }

  /** Reads message 1; returns its payload. Throws on failure. */
  readMessage1(msg: Uint8Array): Uint8Array {
    if (msg.length < DHLEN + TAGLEN) throw new Error("noise message 1 is too short");
    const re = msg.slice(0, DHLEN);
    this.re = re;
    this.ss.mixHash(re);
    this.ss.mixKey(dh(this.s, re));
    return this.ss.decryptAndHash(msg.subarray(DHLEN));
  }

  /** Message 2 with `payload`, and the transport keys. */
  writeMessage2(payload: Uint8Array): { message: Uint8Array; transport: NoiseTransport } {
    if (!this.re) throw new Error("message 2 before message 1");
    const epub = publicKeyOf(this.e);
    this.ss.mixHash(epub);
    this.ss.mixKey(dh(this.e, this.re));
    const message = concatBytes(epub, this.ss.encryptAndHash(payload));
    const [c1, c2] = this.ss.split();
    return { message, transport: { send: c2, recv: c1, handshakeHash: this.ss.h } };
  }
}
