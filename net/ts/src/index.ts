// The oxworld-client package entry (browser and any runtime with a global WebSocket): re-exports the public API.

export { Client, connect, setDefaultWebSocket } from "./client.js";
export type {
  ClientEvents,
  CloseEvent,
  ConnectOptions,
  PlayerLostEvent,
  ReconnectingEvent,
  ReconnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./client.js";
export { Entity } from "./entity.js";
export type { AttrChange, CallEvent, EntityEvents } from "./entity.js";
export {
  ClosedError,
  ErrorCode,
  errorCodeName,
  HandshakeError,
  HelloStatus,
  OxworldError,
  ProtocolError,
  ServerError,
} from "./errors.js";
export type { ProtocolErrorKind } from "./errors.js";
export { decodeValue, encodeValue, Float, float, isValueMap, MAX_DEPTH } from "./value.js";
export type { Encodable, Value, ValueMap } from "./value.js";
export { fnv1a32, fromHex, type Id, idFromHex, idToHex, methodId, NIL_ID, toHex } from "./bytes.js";
export { ApplyError, applyAttrOp } from "./attr_op.js";
export type { AttrOp, PathElem } from "./attr_op.js";
export { CLIENT_PROTOCOL_VERSION, decodeServerMsg, encodeClientMsg } from "./messages.js";
export type { ClientMsg, Pos, ServerMsg } from "./messages.js";
export { ClientChannel, MAX_FRAGMENT, MAX_RECORD } from "./channel.js";
export type { ClientChannelOptions } from "./channel.js";
export { publicKeyOf } from "./noise.js";
