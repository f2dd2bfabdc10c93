// Attribute operations of `AttrOps` (PROTOCOL.md section 7): decoding, encoding, and applying them to a replica exactly as attr_op.rs does.

import { ProtocolError } from "./errors.js";
import { DecodeBudget, type Encodable, MAX_DEPTH, readValue, setKey, type Value, isValueMap, writeValue } from "./value.js";
import { Reader, Writer } from "./wire.js";

/** One step of a path: a map key (string) or a list index (number). */
export type PathElem = string | number;

/** One change to an attribute tree; `path` names the container it changes, root first. */
export type AttrOp =
  | { kind: "MapSet"; path: PathElem[]; key: string; value: Value }
  | { kind: "MapDel"; path: PathElem[]; key: string }
  | { kind: "MapClear"; path: PathElem[] }
  | { kind: "ListSet"; path: PathElem[]; index: number; value: Value }
  | { kind: "ListAppend"; path: PathElem[]; value: Value }
  | { kind: "ListPop"; path: PathElem[] };

/** An operation to encode (values in their encodable form). */
export type AttrOpInput =
  | { kind: "MapSet"; path: PathElem[]; key: string; value: Encodable }
  | { kind: "MapDel"; path: PathElem[]; key: string }
  | { kind: "MapClear"; path: PathElem[] }
  | { kind: "ListSet"; path: PathElem[]; index: number; value: Encodable }
  | { kind: "ListAppend"; path: PathElem[]; value: Encodable }
  | { kind: "ListPop"; path: PathElem[] };

const KIND_CODES = { MapSet: 1, MapDel: 2, MapClear: 3, ListSet: 4, ListAppend: 5, ListPop: 6 } as const;
const ELEM_KEY = 0;
const ELEM_INDEX = 1;

/** Reads one operation; its value spends from the message's budget. */
export function readAttrOp(r: Reader, budget: DecodeBudget): AttrOp {
  const tag = r.u8("attr op");
  const n = r.count("path length", 5);
  if (n > MAX_DEPTH) throw new ProtocolError("TooDeep", `attribute path longer than ${MAX_DEPTH} elements`);
  const path: PathElem[] = [];
  for (let i = 0; i < n; i++) {
    const e = r.u8("path element");
    if (e === ELEM_KEY) path.push(r.str("path key"));
    else if (e === ELEM_INDEX) path.push(r.u32("path index"));
    else throw new ProtocolError("Invalid", "invalid value for path element kind");
  }
  switch (tag) {
    case 1:
      return { kind: "MapSet", path, key: r.str("key"), value: readValue(r, budget) };
    case 2:
      return { kind: "MapDel", path, key: r.str("key") };
    case 3:
      return { kind: "MapClear", path };
    case 4:
      return { kind: "ListSet", path, index: r.u32("index"), value: readValue(r, budget) };
    case 5:
      return { kind: "ListAppend", path, value: readValue(r, budget) };
    case 6:
      return { kind: "ListPop", path };
    default:
      throw new ProtocolError("Invalid", "invalid value for attr op kind");
  }
}

/** Reads an operation list (`u32` count + operations) with one budget for all of it. */
export function readAttrOps(r: Reader): AttrOp[] {
  const budget = new DecodeBudget(r.remaining);
  const n = r.count("op count", 5);
  const ops: AttrOp[] = [];
  for (let i = 0; i < n; i++) ops.push(readAttrOp(r, budget));
  return ops;
}

/** Appends one operation's encoding. */
export function writeAttrOp(w: Writer, op: AttrOpInput): void {
  w.u8(KIND_CODES[op.kind]);
  w.u32(op.path.length);
  for (const e of op.path) {
    if (typeof e === "string") {
      w.u8(ELEM_KEY);
      w.str(e);
    } else {
      w.u8(ELEM_INDEX);
      w.u32(e);
    }
  }
  switch (op.kind) {
    case "MapSet":
      w.str(op.key);
      writeValue(w, op.value);
      break;
    case "MapDel":
      w.str(op.key);
      break;
    case "ListSet":
      w.u32(op.index);
      writeValue(w, op.value);
      break;
    case "ListAppend":
      writeValue(w, op.value);
      break;
    case "MapClear":
    case "ListPop":
      break;
  }
}

/** Appends an operation list: `u32` count, then each. */
export function writeAttrOps(w: Writer, ops: readonly AttrOpInput[]): void {
  w.u32(ops.length);
  for (const op of ops) writeAttrOp(w, op);
}

/** Why an operation did not apply: the replica is out of step with the server. */
export class ApplyError extends ProtocolError {
  override name = "ApplyError";
  constructor(message: string) {
    super("Replica", message);
  }
}

/** The container at `path` below `root`: keys through maps, indices through lists. */
export function walk(root: Value, path: readonly PathElem[]): Value {
  let cur: Value = root;
  for (const e of path) {
    if (typeof e === "string" && isValueMap(cur) && Object.hasOwn(cur, e)) {
      cur = cur[e]!;
    } else if (typeof e === "number" && Array.isArray(cur) && e < cur.length) {
      cur = cur[e]!;
    } else {
      throw new ApplyError("path does not name a container");
    }
  }
  return cur;
}

/**
 * Applies one operation to `root` in place (attr_op.rs `AttrOp::apply`): MapDel of a missing
 * key and ListPop of an empty list change nothing; a path that does not lead to a container of
 * the needed kind, and ListSet past the end, throw {@link ApplyError}.
 */
export function applyAttrOp(root: Value, op: AttrOp): void {
  const target = walk(root, op.path);
  switch (op.kind) {
    case "MapSet":
    case "MapDel":
    case "MapClear":
      if (!isValueMap(target)) throw new ApplyError("path does not name a map");
      if (op.kind === "MapSet") setKey(target, op.key, op.value);
      else if (op.kind === "MapDel") delete target[op.key];
      else for (const k of Object.keys(target)) delete target[k];
      return;
    case "ListSet":
    case "ListAppend":
    case "ListPop":
      if (!Array.isArray(target)) throw new ApplyError("path does not name a list");
      if (op.kind === "ListSet") {
        if (op.index >= target.length) {
          throw new ApplyError(`list index ${op.index} out of range (len ${target.length})`);
        }
        target[op.index] = op.value;
      } else if (op.kind === "ListAppend") {
        target.push(op.value);
      } else {
        target.pop();
      }
      return;
  }
}

/** The value at `path` below `root`, or undefined where the path leads nowhere. */
export function valueAt(root: Value, path: readonly PathElem[]): Value | undefined {
  let cur: Value = root;
  for (const e of path) {
    if (typeof e === "string" && isValueMap(cur) && Object.hasOwn(cur, e)) cur = cur[e]!;
    else if (typeof e === "number" && Array.isArray(cur) && e < cur.length) cur = cur[e]!;
    else return undefined;
  }
  return cur;
}

