// The client channel of PROTOCOL.md section 2, sans-IO: the hello exchange, Noise NK, and records (flags byte, fragmentation, encryption).

import { bytesEqual, concatBytes, decodeUtf8Lossy } from "./bytes.js";
import { HandshakeError, ProtocolError } from "./errors.js";
import { type CipherState, NkInitiator, TAGLEN } from "./noise.js";

/** The hello's first three bytes, "OXW". */
export const MAGIC = Uint8Array.of(0x4f, 0x58, 0x57);
/** The channel's version byte. */
export const CHANNEL_VERSION = 2;
/** Bytes of the hello header (magic, version, mode, features / status). */
export const HELLO_HEADER = 6;
/** Noise prologue prefix; the client hello's 6-byte header follows it. */
export const PROLOGUE_PREFIX = new TextEncoder().encode("oxworld client channel v2");
/** Largest record on any transport. */
export const MAX_RECORD = 65535;
/** Largest fragment of a message in one record (both modes). */
export const MAX_FRAGMENT = MAX_RECORD - TAGLEN - 1;
/** Noise message 1 (`e, es`, empty payload) and 2 (`e, ee`, 1-byte payload) lengths. */
export const NOISE_MSG1_LEN = 32 + TAGLEN;
export const NOISE_MSG2_LEN = 32 + 1 + TAGLEN;
/** Hello feature bit: lz4. This SDK never offers it (see README). */
export const FEATURE_LZ4 = 0x01;
/** Hello feature bit: the client knows sessions (revision 2.2): the gate sends `Session` after `Welcome`. */
export const FEATURE_SESSION = 0x02;
/** Hello feature bit: this connection resumes a session (its first message is `Resume`). Revision 2.2. */
export const FEATURE_RESUME = 0x04;
/** Record flags. */
export const FLAG_LZ4 = 0x01;
export const FLAG_MORE = 0x02;
/** Largest message accepted from the gate by default (as the reference client). */
export const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

/** Mode byte: 0 plain, 1 Noise NK. */
export const Mode = { Plain: 0, NoiseNk: 1 } as const;

/** The Noise prologue for a client hello header. */
export function prologueFor(header: Uint8Array): Uint8Array {
  return concatBytes(PROLOGUE_PREFIX, header);
}

/**
 * Seals messages into records and opens records into messages for one direction pair, once
 * the handshake is done. Shared by the client channel and the test gate.
 */
export class RecordCodec {
  private readonly send: CipherState | undefined;
  private readonly recv: CipherState | undefined;
  private readonly lz4In: boolean;
  private readonly maxMessage: number;
  private parts: Uint8Array[] = [];
  private partsLen = 0;
  private partsLz4: boolean | undefined;

  constructor(cipher: { send: CipherState; recv: CipherState } | undefined, lz4In: boolean, maxMessage: number) {
    this.send = cipher?.send;
    this.recv = cipher?.recv;
    this.lz4In = lz4In;
    this.maxMessage = maxMessage;
  }

  /** One record: flags + fragment, encrypted in mode 1. */
  sealRecord(flags: number, chunk: Uint8Array): Uint8Array {
    const plain = new Uint8Array(1 + chunk.length);
    plain[0] = flags;
    plain.set(chunk, 1);
    return this.send ? this.send.encryptWithAd(new Uint8Array(0), plain) : plain;
  }

  /** The records of one message, cut into fragments of at most {@link MAX_FRAGMENT} bytes. */
  seal(msg: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let at = 0;
    do {
      const end = Math.min(at + MAX_FRAGMENT, msg.length);
      const more = end < msg.length;
      out.push(this.sealRecord(more ? FLAG_MORE : 0, msg.subarray(at, end)));
      at = end;
    } while (at < msg.length);
    return out;
  }

  /** One record in; the whole message once its last fragment is in. Throws ProtocolError. */
  open(record: Uint8Array): Uint8Array | undefined {
    if (record.length > MAX_RECORD) throw new ProtocolError("Record", "record larger than 65535 bytes");
    let pt: Uint8Array = record;
    if (this.recv) {
      if (record.length <= TAGLEN) throw new ProtocolError("Record", "encrypted record of impossible length");
      try {
        pt = this.recv.decryptWithAd(new Uint8Array(0), record);
      } catch {
        throw new ProtocolError("Auth", "a record failed authentication");
      }
    }
    if (pt.length === 0) throw new ProtocolError("Record", "empty record");
    const flags = pt[0]!;
    const data = pt.subarray(1);
    if ((flags & ~(FLAG_LZ4 | FLAG_MORE)) !== 0) throw new ProtocolError("Record", "unknown flag bits");
    if (data.length > MAX_FRAGMENT) throw new ProtocolError("Record", "record larger than the maximum");
    const lz4 = (flags & FLAG_LZ4) !== 0;
    if (lz4 && !this.lz4In) throw new ProtocolError("Record", "compressed record without the lz4 feature");
    if (this.partsLz4 !== undefined && this.partsLz4 !== lz4) {
      throw new ProtocolError("Record", "fragments disagree on compression");
    }
    const total = this.partsLen + data.length;
    const limit = this.maxMessage + (lz4 ? 4 : 0);
    if (total > limit) {
      throw new ProtocolError("TooLarge", `message of at least ${total} bytes exceeds the maximum of ${this.maxMessage} bytes`);
    }
    if ((flags & FLAG_MORE) !== 0) {
      this.parts.push(data.slice());
      this.partsLen = total;
      this.partsLz4 = lz4;
      return undefined;
    }
    let whole: Uint8Array;
    if (this.parts.length === 0) {
      whole = data.slice();
    } else {
      whole = concatBytes(...this.parts, data);
      this.parts = [];
      this.partsLen = 0;
      this.partsLz4 = undefined;
    }
    if (whole.length === 0) throw new ProtocolError("Record", "empty message");
    if (lz4) {
      // Unreachable while this SDK does not offer lz4 (lz4In is false), kept for clarity.
      throw new ProtocolError("Record", "lz4 is not supported by this client");
    }
    return whole;
  }
}

/** What a client channel needs. */
export interface ClientChannelOptions {
  /** true: mode 1 (Noise NK, needs `serverKey`); false: mode 0 (plain). */
  encrypt: boolean;
  /** The gate's X25519 public key (32 bytes), for mode 1. */
  serverKey?: Uint8Array | undefined;
  /** The handshake's ephemeral secret (tests only; random by default). */
  ephemeralSecret?: Uint8Array | undefined;
  /** Largest message accepted from the gate (default 16 MiB). */
  maxMessage?: number | undefined;
  /** Offer resume in the hello (the first message sent will be `Resume`). Revision 2.2. */
  resume?: boolean | undefined;
  /** Say in the hello that this client knows sessions (it gets `Session` after `Welcome`). Revision 2.2. */
  session?: boolean | undefined;
}

type State = "start" | "awaitReply" | "open" | "failed";

/**
 * The client's end of a channel. Drive order: {@link ClientChannel.start} gives the hello
 * record; feed every record from the transport to {@link ClientChannel.handleRecord} (it
 * returns whole messages); {@link ClientChannel.send} seals messages (queued until the
 * handshake is done); write what {@link ClientChannel.takeOutput} returns, in order.
 */
export class ClientChannel {
  private readonly opts: ClientChannelOptions;
  private state: State = "start";
  private noise: NkInitiator | undefined;
  private codec: RecordCodec | undefined;
  private pending: Uint8Array[] = [];
  private out: Uint8Array[] = [];
  private header: Uint8Array = new Uint8Array(0);
  /** The gate accepted {@link FEATURE_RESUME} (known once open). */
  resumeAccepted = false;

  constructor(opts: ClientChannelOptions) {
    this.opts = opts;
    if (opts.encrypt && (!opts.serverKey || opts.serverKey.length !== 32)) {
      throw new TypeError("an encrypted channel needs the gate's 32-byte public key (serverKey)");
    }
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Always false: this SDK does not offer lz4. */
  get compression(): boolean {
    return false;
  }

  get encrypted(): boolean {
    return this.opts.encrypt;
  }

  /** The hello: the first record to send. Call once. */
  start(): Uint8Array {
    if (this.state !== "start") throw new Error("the hello was already written");
    const mode = this.opts.encrypt ? Mode.NoiseNk : Mode.Plain;
    const features = (this.opts.resume ? FEATURE_RESUME : 0) | (this.opts.session ? FEATURE_SESSION : 0);
    this.header = Uint8Array.of(MAGIC[0]!, MAGIC[1]!, MAGIC[2]!, CHANNEL_VERSION, mode, features);
    this.state = "awaitReply";
    if (!this.opts.encrypt) return this.header.slice();
    try {
      this.noise = new NkInitiator(prologueFor(this.header), this.opts.serverKey!, this.opts.ephemeralSecret);
      return concatBytes(this.header, this.noise.writeMessage1());
    } catch (e) {
      this.state = "failed";
      throw new HandshakeError(`the server key is not a usable X25519 public key (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  /** One record from the gate; the whole messages it completes. Throws on any fault (fatal). */
  handleRecord(record: Uint8Array): Uint8Array[] {
    switch (this.state) {
      case "open": {
        try {
          const m = this.codec!.open(record);
          return m ? [m] : [];
        } catch (e) {
          this.state = "failed";
          throw e;
        }
      }
      case "start":
      case "failed":
        throw new ProtocolError("Hello", this.state === "start" ? "a record before the hello" : "the channel already failed");
      case "awaitReply":
        try {
          this.codec = this.finish(record);
        } catch (e) {
          this.state = "failed";
          this.pending = [];
          throw e;
        }
        this.state = "open";
        for (const m of this.pending) this.out.push(...this.codec.seal(m));
        this.pending = [];
        return [];
    }
  }

  private finish(reply: Uint8Array): RecordCodec {
    if (reply.length < HELLO_HEADER) throw new HandshakeError("server hello shorter than its header");
    if (!bytesEqual(reply.subarray(0, 3), MAGIC) || reply[3] !== CHANNEL_VERSION) {
      throw new HandshakeError("not an oxworld version 2 server hello");
    }
    const status = reply[4]!;
    const gateMode = reply[5]!;
    const rest = reply.subarray(HELLO_HEADER);
    if (status !== 0) {
      const reason = decodeUtf8Lossy(rest);
      const st = status >= 2 && status <= 4 ? status : 1;
      let msg = `the gate refused the connection (status ${status}): ${reason}`;
      if (st === 3) {
        msg += gateMode === Mode.Plain ? " (connect with encrypt: false)" : " (connect with serverKey)";
      }
      throw new HandshakeError(msg, { status: st, reason, gateMode });
    }
    const mode = this.opts.encrypt ? Mode.NoiseNk : Mode.Plain;
    if (gateMode !== mode) throw new HandshakeError("the server hello's mode is not the one asked for");
    let features: number;
    let cipher: { send: CipherState; recv: CipherState } | undefined;
    if (!this.noise) {
      if (rest.length !== 1) throw new HandshakeError("plain server hello must carry exactly the features byte");
      features = rest[0]!;
    } else {
      if (rest.length !== NOISE_MSG2_LEN) throw new HandshakeError(`noise message 2 must be ${NOISE_MSG2_LEN} bytes, got ${rest.length}`);
      let payload: Uint8Array;
      try {
        const r = this.noise.readMessage2(rest);
        payload = r.payload;
        cipher = r.transport;
      } catch (e) {
        throw new HandshakeError(`handshake failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.noise = undefined;
      if (payload.length !== 1) throw new HandshakeError("noise message 2 must carry exactly the features byte");
      features = payload[0]!;
    }
    // Only sessions and resume may be offered, so any other accepted feature bit is a fault.
    if (
      (features & ~(FEATURE_RESUME | FEATURE_SESSION)) !== 0 ||
      ((features & FEATURE_RESUME) !== 0 && !this.opts.resume) ||
      ((features & FEATURE_SESSION) !== 0 && !this.opts.session)
    ) {
      throw new HandshakeError("the gate accepted a feature that was not offered");
    }
    this.resumeAccepted = (features & FEATURE_RESUME) !== 0;
    return new RecordCodec(cipher, false, this.opts.maxMessage ?? DEFAULT_MAX_MESSAGE);
  }

  /** Seals one message (or queues it until the handshake is done). Dropped after a failure. */
  send(msg: Uint8Array): void {
    if (this.state === "open") this.out.push(...this.codec!.seal(msg));
    else if (this.state !== "failed") this.pending.push(msg);
  }

  /** Records to write, in order (the hello is not among them: {@link ClientChannel.start}). */
  takeOutput(): Uint8Array[] {
    const o = this.out;
    this.out = [];
    return o;
  }
}
