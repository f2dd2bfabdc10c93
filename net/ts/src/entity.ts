// The client's copy of one entity: attributes, positions with interpolation, per-entity events and calls.

import { type AttrOp, type PathElem, valueAt } from "./attr_op.js";
import { type Id, toHex } from "./bytes.js";
import { Emitter } from "./emitter.js";
import type { Pos } from "./messages.js";
import type { Encodable, Value, ValueMap } from "./value.js";

/** One attribute change, after it was applied. */
export interface AttrChange {
  entity: Entity;
  /**
   * The path of the changed slot, root first: the container's path plus the key (MapSet,
   * MapDel), the index (ListSet, ListAppend: the new element's, ListPop: the removed one's);
   * MapClear: the container's path.
   */
  path: PathElem[];
  /** The slot's new value; undefined when it was removed (MapDel, ListPop). */
  value: Value | undefined;
  /** The operation as received. */
  op: AttrOp;
}

/** A server call of a method on the client. */
export interface CallEvent {
  /** The calling entity's id (32 hex digits). */
  id: string;
  /** The entity, when this client knows it. */
  entity: Entity | undefined;
  /** The method name. */
  method: string;
  /** The arguments (see PROTOCOL.md section 12 for the JS types). */
  args: Value[];
}

/** Events of one entity. */
export interface EntityEvents {
  attrChanged: AttrChange;
  moved: Entity;
  call: CallEvent;
  destroyed: Entity;
}

/** What an entity needs from its client. */
export interface EntityHost {
  call(id: Id, method: string, args: readonly Encodable[]): void;
}

function lerpAngle(a: number, b: number, t: number): number {
  let d = (b - a) % 360;
  if (d > 180) d -= 360;
  else if (d < -180) d += 360;
  return a + d * t;
}

function pathMatches(sub: readonly PathElem[], changed: readonly PathElem[]): boolean {
  const n = Math.min(sub.length, changed.length);
  for (let i = 0; i < n; i++) if (sub[i] !== changed[i]) return false;
  return true;
}

/** An entity this client knows (from `CreateEntity` until `DestroyEntity`). */
export class Entity {
  /** The id as 32 lowercase hex digits (the key of `client.entities`). */
  readonly id: string;
  /** The id's 16 bytes (pass these as a call argument to name the entity). */
  readonly idBytes: Id;
  /** Registered type name (e.g. `Account`). */
  readonly typeName: string;
  /** True for the client's own entity (the one `CreateEntity` marked `is_player`). */
  readonly isPlayer: boolean;
  /** Visible attributes, a plain JS tree kept up to date by `AttrOps`. */
  readonly attrs: ValueMap;
  /** Latest position from the server (or from `client.move` for the player). */
  position: Pos;
  /** When `position` arrived (the client's clock, `performance.now()` by default). */
  positionTime: number;
  /** Where the entity was drawn when `position` arrived: the start of the interpolation. */
  previousPosition: Pos;
  /** When `previousPosition` was current. */
  previousTime: number;
  /** True once the entity was destroyed (or the connection lost). */
  destroyed = false;

  private readonly host: EntityHost;
  private readonly events = new Emitter<EntityEvents>();
  private readonly maxInterpolationMs: number;

  /** @internal Made by the client. */
  constructor(host: EntityHost, id: Id, typeName: string, isPlayer: boolean, attrs: ValueMap, pos: Pos, now: number, maxInterpolationMs: number) {
    this.host = host;
    this.idBytes = id;
    this.id = toHex(id);
    this.typeName = typeName;
    this.isPlayer = isPlayer;
    this.attrs = attrs;
    this.position = pos;
    this.positionTime = now;
    this.previousPosition = pos;
    this.previousTime = now;
    this.maxInterpolationMs = maxInterpolationMs;
  }

  /** Calls `method` of this entity on the server (no reply: replies are server calls). */
  call(method: string, ...args: Encodable[]): void {
    this.host.call(this.idBytes, method, args);
  }

  /** The attribute at `path` (a root key, or a path of keys and indices), or undefined. */
  attr(path: string | readonly PathElem[]): Value | undefined {
    return valueAt(this.attrs, typeof path === "string" ? [path] : path);
  }

  /** Subscribes to this entity's events; returns the unsubscribe function. */
  on<K extends keyof EntityEvents>(event: K, fn: (payload: EntityEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /**
   * Calls `fn(value, change)` whenever the attribute at `path` may have changed: a change at
   * the path, below it, or above it (a parent replaced or cleared). `value` is the attribute's
   * value after the change (undefined if it no longer exists).
   */
  onAttr(path: string | readonly PathElem[], fn: (value: Value | undefined, change: AttrChange) => void): () => void {
    const sub = typeof path === "string" ? [path] : [...path];
    return this.events.on("attrChanged", (c) => {
      if (pathMatches(sub, c.path)) fn(valueAt(this.attrs, sub), c);
    });
  }

  /** Calls `fn(event)` when the server calls `method` of this entity on the client. */
  onCall(method: string, fn: (event: CallEvent) => void): () => void {
    return this.events.on("call", (e) => {
      if (e.method === method) fn(e);
    });
  }

  /**
   * The position to draw at time `nowMs` (same clock as `positionTime`): from
   * `previousPosition` to `position` over the time between the last two updates (at most the
   * client's `maxInterpolationMs`), starting when `position` arrived; `position` once that
   * time has passed (no extrapolation). Yaw turns the short way round.
   */
  interpolatedPosition(nowMs: number = performance.now()): Pos {
    const span = Math.min(this.positionTime - this.previousTime, this.maxInterpolationMs);
    if (!(span > 0)) return { ...this.position };
    const t = Math.min(Math.max((nowMs - this.positionTime) / span, 0), 1);
    const a = this.previousPosition;
    const b = this.position;
    return {
      x: a.x + (b.x - a.x) * t,
      y: a.y + (b.y - a.y) * t,
      z: a.z + (b.z - a.z) * t,
      yaw: t === 1 ? b.yaw : lerpAngle(a.yaw, b.yaw, t),
    };
  }

  /** @internal A new position from the server at `now`. */
  setPosition(pos: Pos, now: number): void {
    this.previousPosition = this.interpolatedPosition(now);
    this.previousTime = this.positionTime;
    this.position = pos;
    this.positionTime = now;
    this.events.emit("moved", this);
  }

  /** @internal A position set locally: no interpolation. */
  snapTo(pos: Pos, now: number): void {
    this.position = pos;
    this.previousPosition = pos;
    this.positionTime = now;
    this.previousTime = now;
  }

  /** @internal */
  emit<K extends keyof EntityEvents>(event: K, payload: EntityEvents[K]): void {
    this.events.emit(event, payload);
  }
}
