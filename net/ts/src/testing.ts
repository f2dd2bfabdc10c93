// Test helpers: the gate's end of a channel (sans-IO), so client code can be tested against a fake gate without a cluster.

import { bytesEqual, concatBytes, utf8 } from "./bytes.js";
import { CHANNEL_VERSION, HELLO_HEADER, MAGIC, Mode, NOISE_MSG1_LEN, prologueFor, RecordCodec } from "./channel.js";
import { NkResponder } from "./noise.js";

export { decodeClientMsg, encodeServerMsg } from "./messages.js";
export type { ServerMsgInput } from "./messages.js";
export type { AttrOpInput } from "./attr_op.js";

/** What a fake gate runs. */
export interface GateChannelOptions {
  /** true: mode 1 with `staticSecret`; false: mode 0. */
  encrypt: boolean;
  /** The gate's X25519 secret (mode 1). */
  staticSecret?: Uint8Array;
  /** The handshake's ephemeral secret (fixed vectors); random by default. */
  ephemeralSecret?: Uint8Array;
  /** Largest message accepted from the client (default 1 MiB, as the gate). */
  maxMessage?: number;
}

/**
 * The gate's end of one client channel, as PROTOCOL.md 2.4-2.6 describe it (no lz4): feed the
 * client's records to {@link GateChannel.handleRecord}; it returns the server hello (for the
 * first record) and whole client messages; {@link GateChannel.seal} makes records of a message.
 */
export class GateChannel {
  private readonly opts: GateChannelOptions;
  private codec: RecordCodec | undefined;
  private failed = false;

  constructor(opts: GateChannelOptions) {
    this.opts = opts;
  }

  get isOpen(): boolean {
    return this.codec !== undefined;
  }

  /** The client's hello offered resume (revision 2.2): its first message is `Resume`. */
  resume = false;

  private hello(status: number, rest: Uint8Array): Uint8Array {
    const mode = this.opts.encrypt ? Mode.NoiseNk : Mode.Plain;
    return concatBytes(Uint8Array.of(MAGIC[0]!, MAGIC[1]!, MAGIC[2]!, CHANNEL_VERSION, status, mode), rest);
  }

  /**
   * One record from the client. The first is the hello: returns `{ reply }` (the server hello;
   * `refused` set when its status is not 0). Later ones return `{ message }` when a message is
   * complete. Throws on a bad record.
   */
  handleRecord(record: Uint8Array): { reply?: Uint8Array; refused?: boolean; message?: Uint8Array } {
    if (this.failed) throw new Error("the channel already failed");
    if (this.codec) {
      const m = this.codec.open(record);
      return m ? { message: m } : {};
    }
    const refuse = (status: number, why: string) => {
      this.failed = true;
      return { reply: this.hello(status, utf8(why)), refused: true };
    };
    if (record.length < HELLO_HEADER || !bytesEqual(record.subarray(0, 3), MAGIC)) return refuse(1, "not an oxworld hello (bad magic)");
    if (record[3] !== CHANNEL_VERSION) return refuse(2, "this gate speaks client protocol version 2 only");
    const mode = record[4]!;
    if (mode > 1) return refuse(1, "unknown mode");
    if (mode !== (this.opts.encrypt ? 1 : 0)) {
      return refuse(3, this.opts.encrypt ? "this gate requires encryption (mode 1)" : "this gate runs unencrypted (mode 0)");
    }
    const header = record.subarray(0, HELLO_HEADER);
    const max = this.opts.maxMessage ?? 1 << 20;
    // As a gate of revision 2.2: sessions (bit 1) and resume (bit 2) are accepted when
    // offered; lz4 never.
    this.resume = (record[5]! & 0x04) !== 0;
    const features = record[5]! & 0x06;
    if (!this.opts.encrypt) {
      this.codec = new RecordCodec(undefined, false, max);
      return { reply: this.hello(0, Uint8Array.of(features)) };
    }
    const rest = record.subarray(HELLO_HEADER);
    if (rest.length !== NOISE_MSG1_LEN) return refuse(1, "noise message 1 must be 48 bytes");
    const r = new NkResponder(prologueFor(header), this.opts.staticSecret!, this.opts.ephemeralSecret);
    try {
      r.readMessage1(rest);
    } catch {
      return refuse(4, "the handshake did not authenticate (wrong server key?)");
    }
    const { message, transport } = r.writeMessage2(Uint8Array.of(features));
    this.codec = new RecordCodec(transport, false, max);
    return { reply: this.hello(0, message) };
  }

  /** The records of one message to the client. */
  seal(msg: Uint8Array): Uint8Array[] {
    if (!this.codec) throw new Error("the handshake is not done");
    return this.codec.seal(msg);
  }

  /** One record with arbitrary flags (for hostile-input tests). */
  sealRaw(flags: number, chunk: Uint8Array): Uint8Array {
    if (!this.codec) throw new Error("the handshake is not done");
    return this.codec.sealRecord(flags, chunk);
  }
}
