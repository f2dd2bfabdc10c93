// The Client: one WebSocket session to a gate (channel, heartbeats), the entity replica, typed events, calls, moves, close and reconnect.

import { type AttrOp, applyAttrOp, type PathElem, valueAt } from "./attr_op.js";
import { fromHex, type Id, methodId, toHex, toId } from "./bytes.js";
import { ClientChannel, DEFAULT_MAX_MESSAGE, MAX_RECORD } from "./channel.js";
import { Emitter } from "./emitter.js";
import { type AttrChange, type CallEvent, Entity } from "./entity.js";
import { ClosedError, ErrorCode, HandshakeError, OxworldError, ProtocolError, ServerError } from "./errors.js";
import { type ClientMsg, decodeServerMsg, encodeClientMsg, type ServerMsg } from "./messages.js";
import { type Encodable, isValueMap, type Value } from "./value.js";

/** The part of the WebSocket API this client uses (browser `WebSocket` and the `ws` package fit). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  // `any`: the only listener type that both the DOM's and the ws package's overloads accept.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
}

/** A WebSocket constructor (`globalThis.WebSocket`, or `WebSocket` from the `ws` package). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

let defaultWebSocket: WebSocketConstructor | undefined;

/**
 * Sets the WebSocket implementation used when `options.WebSocket` is not given (before
 * `globalThis.WebSocket`). The Node entry sets the `ws` package's when Node has no global one.
 */
export function setDefaultWebSocket(ctor: WebSocketConstructor | undefined): void {
  defaultWebSocket = ctor;
}

/** Reconnection back-off: delays double from `initialMs` up to `maxMs` (with ±20 % jitter). */
export interface ReconnectOptions {
  /** First delay (default 500 ms). */
  initialMs?: number;
  /** Largest delay (default 30 000 ms). */
  maxMs?: number;
  /** Attempts after one loss before giving up (default: unlimited). */
  maxAttempts?: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The gate's X25519 public key: 64 hex digits or 32 bytes. Required unless `encrypt: false`. */
  serverKey?: string | Uint8Array;
  /** false: the gate runs with `encrypt = false` (mode 0, no encryption). Default true. */
  encrypt?: boolean;
  /** The WebSocket implementation; default `globalThis.WebSocket` (the Node entry loads `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Time allowed from opening the socket to the `Welcome` (default 10 000 ms). */
  connectTimeoutMs?: number;
  /**
   * Reconnect after a lost session. Default off. A session that had a player is resumed (the
   * same player, its view sent again, the calls sent to it meanwhile delivered: a `resumed`
   * event; revision 2.2) while the server keeps it (`client_resume_s`, 30 s by default);
   * otherwise, or when the resume is refused, the client gets a new boot entity (log in again).
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * More gates' WebSocket addresses: each reconnection attempt tries the next one of `url`
   * and these in turn (a gate that died is not waited for).
   */
  fallbackUrls?: string[];
  /** Largest message accepted from the gate (default 16 MiB). */
  maxMessageBytes?: number;
  /** Longest interpolation between two positions (default 250 ms; see `Entity.interpolatedPosition`). */
  maxInterpolationMs?: number;
  /** The clock for position timestamps, in ms (default `performance.now()`). */
  now?: () => number;
}

/** Why and how the client closed for good. */
export interface CloseEvent {
  /** The server's last word (Idle, Kicked, ...), or what the transport or client said. */
  reason: string;
  /** True when `close()` ended it. */
  byClient: boolean;
  /** The error behind it (a ClosedError, ProtocolError or HandshakeError), unless `byClient`. */
  error: OxworldError | undefined;
}

/** A lost session that will be retried. */
export interface ReconnectingEvent {
  /** 1 for the first retry after a loss. */
  attempt: number;
  /** Wait before this attempt. */
  delayMs: number;
  /** Why the session (or the previous attempt) ended. */
  error: OxworldError;
}

/**
 * The client's player entity died with the game that ran it (that game crashed or was killed;
 * `PlayerLost`, revision 2.1 of protocol 2). The session stays open.
 */
export interface PlayerLostEvent {
  /** The lost player entity's id (32 hex digits). */
  id: string;
  /** The lost entity as this client knew it (now `destroyed`), if it knew it. */
  entity: Entity | undefined;
  /** The id of the game it ran on. */
  game: number;
  /** The gate's human-readable reason (not stable; do not parse). */
  message: string;
}

/** The client's events. */
export interface ClientEvents {
  /** The gate's Welcome of a session (the first one and each reconnection). */
  welcome: { clientId: string; idleTimeoutMs: number };
  /** Any entity created (the player, its space, its neighbours). */
  entityCreated: Entity;
  /** Any entity destroyed (also each known entity when a session ends or the player is lost). */
  entityDestroyed: Entity;
  /** A non-player entity created: it entered the player's area of interest (or is its space). */
  enterAoi: Entity;
  /** A non-player entity destroyed. */
  leaveAoi: Entity;
  /** The client's player entity changed (first creation, hand-over, reconnection, new boot entity after `playerLost`). */
  player: Entity;
  /** One attribute change of a known entity. */
  attrChanged: AttrChange;
  /** Known entities whose positions one `Positions` message updated. */
  positions: { entities: Entity[] };
  /** A server call (also delivered to `onCall` handlers). */
  call: CallEvent;
  /** An `Error` message from the server. */
  error: ServerError;
  /**
   * The player died with its game. Every known entity has been forgotten (with `destroyed`,
   * `entityDestroyed` and `leaveAoi` events, as when a session ends) and `player` is undefined
   * by the time this fires. The gate then creates a fresh boot entity (a `player` event): log
   * in again as after connecting.
   */
  playerLost: PlayerLostEvent;
  /** A lost session is being retried. */
  reconnecting: ReconnectingEvent;
  /** A retry succeeded: a new session (new client id; the same player if it resumes). */
  reconnected: { clientId: string };
  /**
   * The lost session resumed: `player` is the same player entity (its creation and the view
   * follow as `entityCreated` / `player` events), then the server calls sent while away;
   * `dropped` counts those that were not kept. Revision 2.2.
   */
  resumed: { player: string; dropped: number };
  /** The client is closed for good. */
  close: CloseEvent;
}

type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** The smallest heartbeat interval, whatever the gate's timeout (as the reference client). */
const MIN_HEARTBEAT_MS = 100;
const WS_OPEN = 1;

function parseServerKey(k: string | Uint8Array | undefined): Uint8Array | undefined {
  if (k === undefined) return undefined;
  if (typeof k === "string") {
    const t = k.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(t)) throw new TypeError("serverKey must be 64 hex digits (the gate's X25519 public key)");
    return fromHex(t);
  }
  if (!(k instanceof Uint8Array) || k.length !== 32) throw new TypeError("serverKey must be 32 bytes");
  return k.slice();
}

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data instanceof Uint8Array) return data;
  return undefined;
}

/** One WebSocket session: socket, channel, heartbeat timer. */
class Session {
  readonly ws: WebSocketLike;
  readonly channel: ClientChannel;
  welcomed = false;
  ended = false;
  lastSend = 0;
  heartbeatEvery = 0;
  heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  farewell: ServerError | undefined;
  /** Records received while the delivery is held (right after the Welcome). */
  inbox: Uint8Array[] = [];
  holding = false;
  closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(ws: WebSocketLike, channel: ClientChannel) {
    this.ws = ws;
    this.channel = channel;
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  markClosed(): void {
    this.resolveClosed();
  }
}

/**
 * A connection to an oxworld gate over WebSocket, with the client's replica of the entities
 * it sees. Make one with {@link connect} (or `new Client(url, options)`, add listeners, then
 * `await client.connect()`).
 */
export class Client {
  /** Entities this client knows, by id (32 hex digits). */
  readonly entities = new Map<string, Entity>();
  /** The client's own entity, once created. */
  player: Entity | undefined;
  /** This session's client id (32 hex digits), once welcomed. */
  clientId: string | undefined;
  /** The gate's idle timeout from Welcome, in ms. */
  idleTimeoutMs = 0;

  private readonly url: string;
  private readonly opts: ConnectOptions;
  private readonly serverKey: Uint8Array | undefined;
  private readonly events = new Emitter<ClientEvents>();
  private readonly calls = new Emitter<Record<string, CallEvent>>();
  private readonly methodNames = new Map<number, string>();
  private readonly now: () => number;
  private state: ClientState = "idle";
  private session: Session | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private firstConnect: { resolve: () => void; reject: (e: Error) => void } | undefined;
  /** What resumes the session if it is lost: this connection's client id, player and token. */
  private resumeWith: { client: Id; player: Id; token: Id } | undefined;
  private token: Id | undefined;
  private clientIdBytes: Id | undefined;
  /** Index into `url` + `fallbackUrls` of the gate the next session dials. */
  private gateIndex = 0;

  constructor(url: string, options: ConnectOptions = {}) {
    this.url = url;
    this.opts = options;
    const encrypt = options.encrypt ?? true;
    this.serverKey = parseServerKey(options.serverKey);
    if (encrypt && !this.serverKey) {
      throw new TypeError("connect: give serverKey (the gate's public key, `oxworld keygen --public`) or encrypt: false");
    }
    this.now = options.now ?? (() => performance.now());
  }

  /** True while a session is open (welcomed and not lost). */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** "idle", "connecting", "open", "reconnecting" or "closed". */
  get status(): ClientState {
    return this.state;
  }

  /** Heartbeat interval in ms (a third of the idle timeout, at least 100), 0 before Welcome. */
  get heartbeatIntervalMs(): number {
    return this.session?.heartbeatEvery ?? 0;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(event: K, fn: (payload: ClientEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /** Subscribes to the next occurrence of an event; returns the unsubscribe function. */
  once<K extends keyof ClientEvents>(event: K, fn: (payload: ClientEvents[K]) => void): () => void {
    return this.events.once(event, fn);
  }

  /** Calls `fn(event)` for every server call of method `name` (any entity). */
  onCall(name: string, fn: (event: CallEvent) => void): () => void {
    return this.calls.on(name, fn);
  }

  /**
   * Opens the first session; resolves once the gate's Welcome arrived. Rejects with a
   * HandshakeError (refused, wrong key), ProtocolError or ClosedError (socket failure,
   * timeout). The first connection is not retried, even with `reconnect`.
   */
  connect(): Promise<void> {
    if (this.state !== "idle") return Promise.reject(new OxworldError("connect() was already called"));
    this.state = "connecting";
    return new Promise<void>((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.openSession();
    });
  }

  /** Resolves with the player entity (at once if there is one); rejects when the client closes first. */
  waitForPlayer(timeoutMs?: number): Promise<Entity> {
    if (this.player) return Promise.resolve(this.player);
    if (this.state === "closed") return Promise.reject(new ClosedError("the client is closed"));
    return new Promise<Entity>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        offPlayer();
        offClose();
        if (timer !== undefined) clearTimeout(timer);
      };
      const offPlayer = this.events.on("player", (p) => {
        done();
        resolve(p);
      });
      const offClose = this.events.on("close", (c) => {
        done();
        reject(c.error ?? new ClosedError(c.reason));
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(new ClosedError(`no player entity within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Calls `method` of entity `id` (32 hex digits or 16 bytes) with `args`. No reply: the game
   * answers with server calls (`onCall`) or an `error` event. Throws ClosedError when no
   * session is open, TypeError/RangeError for arguments that cannot be encoded.
   */
  call(id: string | Uint8Array, method: string, args: readonly Encodable[] = []): void {
    const mid = methodId(method);
    this.methodNames.set(mid, method);
    this.send({ type: "Call", target: toId(id), method: mid, args: [...args] });
  }

  /**
   * Moves the client's own entity (client-driven movement; the game must enable it for the
   * entity). Updates `player.position` at once. Throws ClosedError without a session,
   * OxworldError without a player entity, RangeError for a non-finite component.
   */
  move(pos: { x: number; y: number; z: number; yaw?: number }): void {
    const p = { x: pos.x, y: pos.y, z: pos.z, yaw: pos.yaw ?? 0 };
    for (const v of [p.x, p.y, p.z, p.yaw]) {
      if (typeof v !== "number" || !Number.isFinite(v)) throw new RangeError("a position's x, y, z and yaw must be finite numbers");
    }
    const player = this.player;
    if (!player) {
      if (this.state !== "open") throw new ClosedError("no session is open");
      throw new OxworldError("no player entity yet");
    }
    this.send({ type: "Move", id: player.idBytes, pos: p });
    player.snapTo({ x: Math.fround(p.x), y: Math.fround(p.y), z: Math.fround(p.z), yaw: Math.fround(p.yaw) }, this.now());
  }

  /** Closes the client for good (no reconnect); resolves once the socket is closed. */
  close(): Promise<void> {
    if (this.state === "closed") return Promise.resolve();
    const s = this.session;
    this.state = "closed";
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const ev: CloseEvent = { reason: "closed by the client", byClient: true, error: undefined };
    if (this.firstConnect) {
      this.firstConnect.reject(new ClosedError(ev.reason));
      this.firstConnect = undefined;
    }
    if (s) this.endSession(s, 1000, "client closing");
    this.dropReplica();
    this.events.emit("close", ev);
    if (!s) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      void s.closed.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // ----- sessions -----

  private wsConstructor(): WebSocketConstructor {
    if (this.opts.WebSocket) return this.opts.WebSocket;
    if (defaultWebSocket) return defaultWebSocket;
    const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!g) {
      throw new OxworldError("no WebSocket implementation: pass { WebSocket } or, in Node 20, install the ws package (npm install ws)");
    }
    return g;
  }

  private openSession(): void {
    let s: Session;
    try {
      const resume = this.resumeWith;
      const channel = new ClientChannel({
        encrypt: this.opts.encrypt ?? true,
        serverKey: this.serverKey,
        maxMessage: this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
        resume: resume !== undefined,
        session: true,
      });
      const urls = [this.url, ...(this.opts.fallbackUrls ?? [])];
      const WS = this.wsConstructor();
      const ws = new WS(urls[this.gateIndex % urls.length]!);
      ws.binaryType = "arraybuffer";
      s = new Session(ws, channel);
    } catch (e) {
      this.sessionLost(undefined, e instanceof OxworldError ? e : new ClosedError(e instanceof Error ? e.message : String(e)));
      return;
    }
    this.session = s;
    const timeout = this.opts.connectTimeoutMs ?? 10_000;
    s.connectTimer = setTimeout(() => {
      this.fail(s, new ClosedError(`no Welcome from the gate within ${timeout} ms`));
    }, timeout);
    s.ws.addEventListener("open", () => {
      if (s.ended) return;
      try {
        this.write(s, [s.channel.start()]);
      } catch (e) {
        this.fail(s, e instanceof OxworldError ? e : new ProtocolError("Handshake", String(e)));
      }
    });
    s.ws.addEventListener("message", (ev: { data: unknown }) => {
      if (s.ended) return;
      const rec = toBytes(ev.data);
      if (!rec) {
        this.fail(s, new ProtocolError("Transport", "the gate sent a text WebSocket message"));
        return;
      }
      if (rec.length > MAX_RECORD) {
        this.fail(s, new ProtocolError("Record", "a WebSocket message over 65535 bytes"));
        return;
      }
      if (s.holding) s.inbox.push(rec);
      else this.handleRecord(s, rec);
    });
    s.ws.addEventListener("close", (ev: { code?: number; reason?: string }) => {
      s.markClosed();
      if (s.ended) return;
      // Records held back after the Welcome come first: they may hold the gate's last word.
      if (s.holding) this.drain(s);
      if (s.ended) return;
      const why = s.farewell
        ? s.farewell.reason
        : `the WebSocket closed (code ${ev.code ?? "?"}${ev.reason ? `, ${ev.reason}` : ""})`;
      this.fail(s, new ClosedError(why, s.farewell));
    });
    s.ws.addEventListener("error", (ev: { message?: string; error?: unknown }) => {
      if (s.ended) return;
      if (s.holding) this.drain(s);
      if (s.ended) return;
      const detail = ev.message ?? (ev.error instanceof Error ? ev.error.message : undefined);
      const why = s.farewell ? s.farewell.reason : detail ? `WebSocket error: ${detail}` : "WebSocket error";
      this.fail(s, new ClosedError(why, s.farewell));
    });
  }

  private handleRecord(s: Session, rec: Uint8Array): void {
    let msgs: Uint8Array[];
    try {
      msgs = s.channel.handleRecord(rec);
      this.flush(s);
    } catch (e) {
      this.fail(s, e instanceof OxworldError ? e : new ProtocolError("Record", String(e)));
      return;
    }
    for (const m of msgs) {
      if (s.ended) return;
      let msg: ServerMsg;
      try {
        msg = decodeServerMsg(m);
      } catch (e) {
        this.fail(s, e instanceof OxworldError ? e : new ProtocolError("Invalid", String(e)));
        return;
      }
      this.dispatch(s, msg);
    }
  }

  /** Delivers the records that arrived while the delivery was held. */
  private drain(s: Session): void {
    s.holding = false;
    while (s.inbox.length > 0 && !s.ended && !s.holding) this.handleRecord(s, s.inbox.shift()!);
  }

  private write(s: Session, records: Uint8Array[]): void {
    for (const r of records) s.ws.send(r);
  }

  private flush(s: Session): void {
    const out = s.channel.takeOutput();
    if (out.length > 0 && s.ws.readyState === WS_OPEN) this.write(s, out);
  }

  private send(msg: ClientMsg): void {
    const s = this.session;
    if (!s || s.ended || this.state !== "open") throw new ClosedError(this.state === "reconnecting" ? "reconnecting" : "no session is open");
    s.channel.send(encodeClientMsg(msg));
    s.lastSend = this.now();
    this.flush(s);
  }

  private armHeartbeat(s: Session): void {
    if (s.heartbeatEvery <= 0 || s.ended) return;
    const due = s.lastSend + s.heartbeatEvery - this.now();
    s.heartbeatTimer = setTimeout(() => {
      if (s.ended) return;
      if (this.now() - s.lastSend >= s.heartbeatEvery - 1) {
        s.channel.send(encodeClientMsg({ type: "Heartbeat" }));
        s.lastSend = this.now();
        this.flush(s);
      }
      this.armHeartbeat(s);
    }, Math.max(due, 1));
  }

  private endSession(s: Session, code: number, reason: string): void {
    if (s.ended) return;
    s.ended = true;
    if (s.heartbeatTimer !== undefined) clearTimeout(s.heartbeatTimer);
    if (s.connectTimer !== undefined) clearTimeout(s.connectTimer);
    s.inbox = [];
    try {
      s.ws.close(code, reason);
    } catch {
      // Closing a socket that never opened may throw in some implementations.
    }
  }

  /** A session failed (socket, channel, decoding, timeout). */
  private fail(s: Session, error: OxworldError): void {
    if (s.ended) return;
    // Browsers allow only 1000 and 3000-4999 as close codes.
    this.endSession(s, 1000, "");
    this.sessionLost(s, error);
  }

  private sessionLost(s: Session | undefined, error: OxworldError): void {
    if (s && this.session !== s) return;
    this.session = undefined;
    const wasWelcomed = s?.welcomed ?? false;
    if (this.state === "closed") return;
    if (this.firstConnect) {
      const fc = this.firstConnect;
      this.firstConnect = undefined;
      this.state = "closed";
      fc.reject(error);
      this.events.emit("close", { reason: reasonOf(error), byClient: false, error });
      return;
    }
    // A session with a player can be resumed by the next one (kept until a Welcome answers).
    const player = this.player;
    if (wasWelcomed && player && this.clientIdBytes && this.token) {
      this.resumeWith = { client: this.clientIdBytes, player: player.idBytes, token: this.token };
    }
    if (wasWelcomed) this.dropReplica();
    // The next attempt dials the next gate.
    this.gateIndex++;
    const rc = this.opts.reconnect;
    const permanent =
      (error instanceof HandshakeError && error.status !== undefined) ||
      (error instanceof ClosedError && error.serverError?.code === ErrorCode.Kicked);
    const max = typeof rc === "object" ? (rc.maxAttempts ?? Infinity) : Infinity;
    if (!rc || permanent || this.attempt >= max) {
      this.state = "closed";
      this.events.emit("close", { reason: reasonOf(error), byClient: false, error });
      return;
    }
    this.state = "reconnecting";
    this.attempt++;
    const initial = typeof rc === "object" ? (rc.initialMs ?? 500) : 500;
    const maxMs = typeof rc === "object" ? (rc.maxMs ?? 30_000) : 30_000;
    const base = Math.min(initial * 2 ** (this.attempt - 1), maxMs);
    const delayMs = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.events.emit("reconnecting", { attempt: this.attempt, delayMs, error });
    if (this.state !== "reconnecting") return; // closed by a listener
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state === "reconnecting") this.openSession();
    }, delayMs);
  }

  /** Forgets every entity of a lost session, with destroy events. */
  private dropReplica(): void {
    this.clientId = undefined;
    this.dropEntities();
  }

  /** Forgets every known entity and the player, with destroy events. */
  private dropEntities(): void {
    const all = [...this.entities.values()];
    this.entities.clear();
    this.player = undefined;
    for (const e of all) this.destroyed(e);
  }

  private destroyed(e: Entity): void {
    e.destroyed = true;
    e.emit("destroyed", e);
    this.events.emit("entityDestroyed", e);
    if (!e.isPlayer) this.events.emit("leaveAoi", e);
  }

  // ----- messages -----

  private dispatch(s: Session, m: ServerMsg): void {
    switch (m.type) {
      case "Welcome": {
        if (s.welcomed) {
          this.fail(s, new ProtocolError("Invalid", "a second Welcome"));
          return;
        }
        s.welcomed = true;
        if (s.connectTimer !== undefined) clearTimeout(s.connectTimer);
        s.connectTimer = undefined;
        this.clientId = toHex(m.clientId);
        this.clientIdBytes = m.clientId;
        this.token = undefined;
        this.idleTimeoutMs = m.idleTimeoutMs;
        s.heartbeatEvery = m.idleTimeoutMs > 0 ? Math.max(m.idleTimeoutMs / 3, MIN_HEARTBEAT_MS) : 0;
        s.lastSend = this.now();
        this.armHeartbeat(s);
        this.state = "open";
        // Resuming: `Resume` is this connection's first message (a gate that did not accept
        // resume in the hello gives a boot entity instead: a login).
        const resume = this.resumeWith;
        if (resume && s.channel.resumeAccepted) {
          s.channel.send(encodeClientMsg({ type: "Resume", ...resume }));
          s.lastSend = this.now();
          this.flush(s);
        } else {
          this.resumeWith = undefined;
        }
        // Hold later records until the code awaiting connect() (or the reconnected event) ran,
        // so listeners it adds see the player's creation.
        s.holding = true;
        setTimeout(() => this.drain(s), 0);
        this.events.emit("welcome", { clientId: this.clientId, idleTimeoutMs: m.idleTimeoutMs });
        if (this.firstConnect) {
          const fc = this.firstConnect;
          this.firstConnect = undefined;
          fc.resolve();
        } else {
          this.attempt = 0;
          this.events.emit("reconnected", { clientId: this.clientId });
        }
        return;
      }
      case "CreateEntity": {
        if (!isValueMap(m.attrs)) {
          this.fail(s, new ProtocolError("Invalid", "CreateEntity attributes are not a map"));
          return;
        }
        const hex = toHex(m.id);
        const old = this.entities.get(hex);
        if (old) {
          this.entities.delete(hex);
          if (this.player === old) this.player = undefined;
          this.destroyed(old);
        }
        const host = { call: (id: Id, method: string, args: readonly Encodable[]) => this.call(id, method, args) };
        const e = new Entity(host, m.id, m.typeName, m.isPlayer, m.attrs, m.pos, this.now(), this.opts.maxInterpolationMs ?? 250);
        this.entities.set(hex, e);
        if (m.isPlayer) this.player = e;
        this.events.emit("entityCreated", e);
        if (!m.isPlayer) this.events.emit("enterAoi", e);
        if (m.isPlayer) this.events.emit("player", e);
        return;
      }
      case "DestroyEntity": {
        const hex = toHex(m.id);
        const e = this.entities.get(hex);
        if (!e) return;
        this.entities.delete(hex);
        if (this.player === e) this.player = undefined;
        this.destroyed(e);
        return;
      }
      case "Call": {
        const hex = toHex(m.id);
        const ev: CallEvent = { id: hex, entity: this.entities.get(hex), method: m.method, args: m.args };
        this.events.emit("call", ev);
        ev.entity?.emit("call", ev);
        this.calls.emit(m.method, ev);
        return;
      }
      case "Error": {
        // A refused resume: a boot entity follows (log in again).
        if (m.code === ErrorCode.ResumeRefused) this.resumeWith = undefined;
        const err = new ServerError(m.code, toHex(m.target), m.method, m.message, m.method !== 0 ? this.methodNames.get(m.method) : undefined);
        if (err.isFarewell) s.farewell = err;
        this.events.emit("error", err);
        return;
      }
      case "AttrOps": {
        const e = this.entities.get(toHex(m.id));
        if (!e) return;
        // As the reference client: every op is applied in order, one that does not fit is
        // skipped, and the session then fails (the replica is out of step).
        let failed: ProtocolError | undefined;
        for (const op of m.ops) {
          try {
            applyAttrOp(e.attrs, op);
          } catch (err) {
            failed ??= err instanceof ProtocolError ? err : new ProtocolError("Replica", String(err));
            continue;
          }
          const c: AttrChange = { entity: e, path: changedPath(op, e.attrs), value: changedValue(op, e.attrs), op };
          e.emit("attrChanged", c);
          this.events.emit("attrChanged", c);
        }
        if (failed) this.fail(s, failed);
        return;
      }
      case "Positions": {
        const now = this.now();
        const moved: Entity[] = [];
        for (const { id, pos } of m.entries) {
          const e = this.entities.get(toHex(id));
          if (!e) continue;
          e.setPosition(pos, now);
          moved.push(e);
        }
        if (moved.length > 0) this.events.emit("positions", { entities: moved });
        return;
      }
      case "Session":
        this.token = m.token;
        return;
      case "Resumed": {
        this.resumeWith = undefined;
        this.dropEntities();
        if (s.ended) return;
        this.events.emit("resumed", { player: toHex(m.player), dropped: m.dropped });
        return;
      }
      case "PlayerLost": {
        // The gate forgot every entity it told this client about (they can no longer be
        // addressed); the new boot entity's CreateEntity(isPlayer) follows.
        const hex = toHex(m.entity);
        const entity = this.entities.get(hex);
        this.dropEntities();
        if (s.ended) return; // a destroy listener closed the client
        this.events.emit("playerLost", { id: hex, entity, game: m.game, message: m.message });
        return;
      }
    }
  }
}

/** The changed slot's path, after the op was applied (see {@link AttrChange}). */
function changedPath(op: AttrOp, root: Value): PathElem[] {
  switch (op.kind) {
    case "MapSet":
    case "MapDel":
      return [...op.path, op.key];
    case "MapClear":
      return [...op.path];
    case "ListSet":
      return [...op.path, op.index];
    case "ListAppend":
    case "ListPop": {
      const list = valueAt(root, op.path);
      const n = Array.isArray(list) ? list.length : 0;
      return [...op.path, op.kind === "ListAppend" ? n - 1 : n];
    }
  }
}

function changedValue(op: AttrOp, root: Value): Value | undefined {
  switch (op.kind) {
    case "MapSet":
    case "ListSet":
    case "ListAppend":
      return op.value;
    case "MapDel":
    case "ListPop":
      return undefined;
    case "MapClear":
      return valueAt(root, op.path);
  }
}

function reasonOf(e: OxworldError): string {
  if (e instanceof ClosedError) return e.reason;
  return e.message;
}

/**
 * Connects to a gate's WebSocket address (e.g. `ws://127.0.0.1:14100/`) and resolves once the
 * gate's Welcome arrived. Listeners added right after `await connect(...)` still see the
 * player's creation (delivery waits for that code to run).
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Client> {
  const c = new Client(url, options);
  await c.connect();
  return c;
}
