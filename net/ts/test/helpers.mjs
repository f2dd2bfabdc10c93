// Shared test helpers: hex parsing, a ProtocolError assertion, and an in-process fake gate over WebSocket (ws) built on GateChannel.

import assert from "node:assert/strict";
import { WebSocketServer } from "ws";

import { ProtocolError } from "../dist/index.js";
import { decodeClientMsg, encodeServerMsg } from "../dist/messages.js";
import { GateChannel } from "../dist/testing.js";

/** Bytes from hex with optional whitespace. */
export function h(s) {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
}

/** Lowercase hex. */
export function hex(b) {
  return Buffer.from(b).toString("hex");
}

/** Asserts that fn throws a ProtocolError (and nothing else); returns it. */
export function throwsProtocol(fn, what = "") {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected a ProtocolError ${what}, nothing was thrown`);
  assert.ok(err instanceof ProtocolError, `expected a ProtocolError ${what}, got ${err?.constructor?.name}: ${err?.message}`);
  return err;
}

/** A deterministic PRNG (xorshift32) for fuzz loops. */
export function rng(seed = 0x9e3779b9) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export const GATE_SECRET = Uint8Array.from({ length: 32 }, (_, i) => i);
export const GATE_PUBLIC_HEX = "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f";

/**
 * A fake gate: a WebSocket server on 127.0.0.1 whose connections run a GateChannel. For each
 * connection, `onConnection(conn)` is called with helpers: conn.send(msgInput), conn.messages
 * (decoded client messages), conn.next(pred) (a promise of the next matching message),
 * conn.raw(record), conn.ws.
 */
export async function fakeGate({ encrypt = true, onConnection = () => {}, onHello } = {}) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const conns = [];
  wss.on("connection", (ws) => {
    const ch = new GateChannel({ encrypt, staticSecret: GATE_SECRET });
    const conn = {
      ws,
      ch,
      messages: [],
      waiters: [],
      send(m) {
        for (const r of ch.seal(encodeServerMsg(m))) ws.send(r);
      },
      raw(r) {
        ws.send(r);
      },
      next(pred = () => true, timeoutMs = 3000) {
        const i = conn.messages.findIndex(pred);
        if (i >= 0) return Promise.resolve(conn.messages.splice(i, 1)[0]);
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("fake gate: no matching client message")), timeoutMs);
          conn.waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
        });
      },
    };
    conns.push(conn);
    ws.on("message", (data) => {
      const rec = new Uint8Array(data);
      if (!ch.isOpen) {
        const r = ch.handleRecord(rec);
        if (onHello) onHello(r, conn);
        ws.send(r.reply);
        if (r.refused) ws.close();
        else onConnection(conn);
        return;
      }
      const { message } = ch.handleRecord(rec);
      if (!message) return;
      const m = decodeClientMsg(message);
      const w = conn.waiters.findIndex((x) => x.pred(m));
      if (w >= 0) conn.waiters.splice(w, 1)[0].resolve(m);
      else conn.messages.push(m);
    });
  });
  const { port } = wss.address();
  return {
    url: `ws://127.0.0.1:${port}/`,
    conns,
    close: () =>
      new Promise((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

/** An id of 16 copies of byte b. */
export function idOf(b) {
  return new Uint8Array(16).fill(b);
}

export const ORIGIN = { x: 0, y: 0, z: 0, yaw: 0 };

/** Resolves when `emitter.on(event)` fires (optionally matching pred). */
export function nextEvent(client, event, pred = () => true, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event`));
    }, timeoutMs);
    const off = client.on(event, (p) => {
      if (!pred(p)) return;
      clearTimeout(t);
      off();
      resolve(p);
    });
  });
}
