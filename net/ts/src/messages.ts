// Client->server and server->client messages (PROTOCOL.md sections 6 and 7): encoders and strict decoders for both directions.

import { type AttrOp, type AttrOpInput, readAttrOps, writeAttrOps } from "./attr_op.js";
import type { Id } from "./bytes.js";
import { ProtocolError } from "./errors.js";
import { DecodeBudget, type Encodable, readArgs, readValue, type Value, writeArgs, writeValue } from "./value.js";
import { Reader, Writer } from "./wire.js";

/** The protocol version this SDK speaks (hello byte and `Welcome.version`), up to revision 2.2 (resume). */
export const CLIENT_PROTOCOL_VERSION = 2;

/** Position (x, y, z) and yaw in degrees (0 faces +Z, 90 faces +X); `f32`s on the wire. */
export interface Pos {
  x: number;
  y: number;
  z: number;
  yaw: number;
}

export const MsgType = {
  Call: 0x01,
  Heartbeat: 0x02,
  Move: 0x03,
  /** Revision 2.2. */
  Resume: 0x04,
  Welcome: 0x81,
  CreateEntity: 0x82,
  DestroyEntity: 0x83,
  ServerCall: 0x84,
  Error: 0x85,
  AttrOps: 0x86,
  Positions: 0x87,
  /** Revision 2.1 of protocol 2. */
  PlayerLost: 0x88,
  /** Revision 2.2. */
  Session: 0x89,
  /** Revision 2.2. */
  Resumed: 0x8a,
} as const;

/** A message from the client to the gate. */
export type ClientMsg =
  | { type: "Call"; target: Id; method: number; args: Encodable[] }
  | { type: "Heartbeat" }
  | { type: "Move"; id: Id; pos: Pos }
  /** Resume a lost session: the first message of a connection whose hello offered resume. Revision 2.2. */
  | { type: "Resume"; client: Id; player: Id; token: Id };

/** A message from the gate to the client. */
export type ServerMsg =
  | { type: "Welcome"; version: number; clientId: Id; idleTimeoutMs: number }
  | { type: "CreateEntity"; isPlayer: boolean; id: Id; typeName: string; attrs: Value; pos: Pos }
  | { type: "DestroyEntity"; id: Id }
  | { type: "Call"; id: Id; method: string; args: Value[] }
  | { type: "Error"; code: number; target: Id; method: number; message: string }
  | { type: "AttrOps"; id: Id; ops: AttrOp[] }
  | { type: "Positions"; entries: { id: Id; pos: Pos }[] }
  /**
   * The client's player entity is gone with the game that ran it (that game crashed or was
   * killed). Everything the client was told about is forgotten; a fresh boot entity's
   * `CreateEntity(isPlayer)` follows. Revision 2.1 of protocol 2 (the version stays 2).
   */
  | { type: "PlayerLost"; entity: Id; game: number; message: string }
  /** The token that resumes this session (right after `Welcome`). Revision 2.2. */
  | { type: "Session"; token: Id }
  /** A `Resume` succeeded: the player's view follows as creates, then the calls kept meanwhile. Revision 2.2. */
  | { type: "Resumed"; player: Id; dropped: number };

/** A server message to encode (values in their encodable form): for tests and fake gates. */
export type ServerMsgInput =
  | { type: "Welcome"; version: number; clientId: Id; idleTimeoutMs: number }
  | { type: "CreateEntity"; isPlayer: boolean; id: Id; typeName: string; attrs: Encodable; pos: Pos }
  | { type: "DestroyEntity"; id: Id }
  | { type: "Call"; id: Id; method: string; args: Encodable[] }
  | { type: "Error"; code: number; target: Id; method: number; message: string }
  | { type: "AttrOps"; id: Id; ops: AttrOpInput[] }
  | { type: "Positions"; entries: { id: Id; pos: Pos }[] }
  /**
   * The client's player entity is gone with the game that ran it (that game crashed or was
   * killed). Everything the client was told about is forgotten; a fresh boot entity's
   * `CreateEntity(isPlayer)` follows. Revision 2.1 of protocol 2 (the version stays 2).
   */
  | { type: "PlayerLost"; entity: Id; game: number; message: string }
  | { type: "Session"; token: Id }
  | { type: "Resumed"; player: Id; dropped: number };

function writeId(w: Writer, id: Id): void {
  if (!(id instanceof Uint8Array) || id.length !== 16) throw new TypeError("an id is 16 bytes");
  w.raw(id);
}

function writePos(w: Writer, p: Pos): void {
  w.f32(p.x);
  w.f32(p.y);
  w.f32(p.z);
  w.f32(p.yaw);
}

function readPos(r: Reader): Pos {
  return { x: r.f32("position"), y: r.f32("position"), z: r.f32("position"), yaw: r.f32("position") };
}

/** Encodes a client message (without any record framing). */
export function encodeClientMsg(m: ClientMsg): Uint8Array {
  const w = new Writer();
  switch (m.type) {
    case "Call":
      w.u8(MsgType.Call);
      writeId(w, m.target);
      w.u32(m.method >>> 0);
      writeArgs(w, m.args);
      break;
    case "Heartbeat":
      w.u8(MsgType.Heartbeat);
      break;
    case "Move":
      w.u8(MsgType.Move);
      writeId(w, m.id);
      writePos(w, m.pos);
      break;
    case "Resume":
      w.u8(MsgType.Resume);
      writeId(w, m.client);
      writeId(w, m.player);
      writeId(w, m.token);
      break;
  }
  return w.finish();
}

/** Decodes a client message (what a gate does; for tests and fake gates). */
export function decodeClientMsg(b: Uint8Array): ClientMsg {
  const r = new Reader(b);
  const t = r.u8("message type");
  let m: ClientMsg;
  switch (t) {
    case MsgType.Call:
      m = { type: "Call", target: r.id("target id"), method: r.u32("method id"), args: readArgs(r) };
      break;
    case MsgType.Heartbeat:
      m = { type: "Heartbeat" };
      break;
    case MsgType.Move:
      m = { type: "Move", id: r.id("entity id"), pos: readPos(r) };
      break;
    case MsgType.Resume:
      m = { type: "Resume", client: r.id("client id"), player: r.id("player id"), token: r.id("resume token") };
      break;
    default:
      throw new ProtocolError("UnknownType", `unknown message type 0x${t.toString(16).padStart(2, "0")}`);
  }
  r.finish();
  return m;
}

/** Decodes one whole server message; trailing bytes, unknown types and bad fields are ProtocolErrors. */
export function decodeServerMsg(b: Uint8Array): ServerMsg {
  const r = new Reader(b);
  const t = r.u8("message type");
  let m: ServerMsg;
  switch (t) {
    case MsgType.Welcome:
      m = { type: "Welcome", version: r.u16("version"), clientId: r.id("client id"), idleTimeoutMs: r.u32("idle timeout") };
      break;
    case MsgType.CreateEntity: {
      const p = r.u8("is_player");
      if (p > 1) throw new ProtocolError("Invalid", "invalid value for is_player");
      const id = r.id("entity id");
      const typeName = r.str("type name");
      const attrs = readValue(r, new DecodeBudget(r.remaining));
      m = { type: "CreateEntity", isPlayer: p === 1, id, typeName, attrs, pos: readPos(r) };
      break;
    }
    case MsgType.DestroyEntity:
      m = { type: "DestroyEntity", id: r.id("entity id") };
      break;
    case MsgType.ServerCall:
      m = { type: "Call", id: r.id("entity id"), method: r.str("method"), args: readArgs(r) };
      break;
    case MsgType.Error:
      m = {
        type: "Error",
        code: r.u16("error code"),
        target: r.id("target id"),
        method: r.u32("method id"),
        message: r.str("message"),
      };
      break;
    case MsgType.AttrOps:
      m = { type: "AttrOps", id: r.id("entity id"), ops: readAttrOps(r) };
      break;
    case MsgType.Positions: {
      const n = r.count("position count", 32);
      const entries: { id: Id; pos: Pos }[] = [];
      for (let i = 0; i < n; i++) entries.push({ id: r.id("entity id"), pos: readPos(r) });
      m = { type: "Positions", entries };
      break;
    }
    case MsgType.PlayerLost:
      m = { type: "PlayerLost", entity: r.id("entity id"), game: r.u16("game"), message: r.str("message") };
      break;
    case MsgType.Session:
      m = { type: "Session", token: r.id("resume token") };
      break;
    case MsgType.Resumed:
      m = { type: "Resumed", player: r.id("player id"), dropped: r.u32("dropped") };
      break;
    default:
      throw new ProtocolError("UnknownType", `unknown message type 0x${t.toString(16).padStart(2, "0")}`);
  }
  r.finish();
  return m;
}

/** Encodes a server message (what a gate sends; for tests and fake gates). */
export function encodeServerMsg(m: ServerMsgInput): Uint8Array {
  const w = new Writer();
  switch (m.type) {
    case "Welcome":
      w.u8(MsgType.Welcome);
      w.u16(m.version);
      writeId(w, m.clientId);
      w.u32(m.idleTimeoutMs);
      break;
    case "CreateEntity":
      w.u8(MsgType.CreateEntity);
      w.u8(m.isPlayer ? 1 : 0);
      writeId(w, m.id);
      w.str(m.typeName);
      writeValue(w, m.attrs);
      writePos(w, m.pos);
      break;
    case "DestroyEntity":
      w.u8(MsgType.DestroyEntity);
      writeId(w, m.id);
      break;
    case "Call":
      w.u8(MsgType.ServerCall);
      writeId(w, m.id);
      w.str(m.method);
      writeArgs(w, m.args);
      break;
    case "Error":
      w.u8(MsgType.Error);
      w.u16(m.code);
      writeId(w, m.target);
      w.u32(m.method);
      w.str(m.message);
      break;
    case "AttrOps":
      w.u8(MsgType.AttrOps);
      writeId(w, m.id);
      writeAttrOps(w, m.ops);
      break;
    case "Positions":
      w.u8(MsgType.Positions);
      w.u32(m.entries.length);
      for (const e of m.entries) {
        writeId(w, e.id);
        writePos(w, e.pos);
      }
      break;
    case "PlayerLost":
      w.u8(MsgType.PlayerLost);
      writeId(w, m.entity);
      w.u16(m.game);
      w.str(m.message);
      break;
    case "Session":
      w.u8(MsgType.Session);
      writeId(w, m.token);
      break;
    case "Resumed":
      w.u8(MsgType.Resumed);
      writeId(w, m.player);
      w.u32(m.dropped);
      break;
  }
  return w.finish();
}
