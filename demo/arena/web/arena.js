// The arena in a browser: log in, then draw what the client SDK's replica holds on a canvas
// (players, monsters, shots, bites), move with the keyboard (client-driven movement), shoot by
// clicking, change arenas with 1-4, read the score board. See demo/arena/README.md for every
// method the game offers, and "In a browser" there for this page.
//
// World and screen: the arena is x and z in 0..200; the screen shows x to the right and z up
// (yaw 0 faces +z, 90 faces +x, as the server's geometry). The camera follows the own player;
// a spectator's camera shows the whole arena.

import { connect, toHex } from "./oxworld-client.js";

// ---- the game's numbers (demo/arena/src/rules.rs) ----
const ARENA = 200;
const VIEW_RADIUS = 100;
const SHOOT_RANGE = 60;
const MONSTER_CORPSE_MS = 2000;
const RESPAWN_MS = 3000;
const ARENA_KINDS = 4;
const ARENA_NAMES = { 1: "Foundry", 2: "Glacier", 3: "Marsh", 4: "Dunes" };

// ---- this client's choices ----
/** How fast the own player runs (units per second; monsters walk at 6). */
const SPEED = 18;
/** Shortest time between two `Move`s sent. */
const MOVE_EVERY_MS = 75;
/** After a placement (arena entry, respawn) the server takes moves again 300 ms later. */
const HOLD_MS = 350;
/** How often the score board is asked for. */
const SCORES_EVERY_MS = 3000;
/** World units from the camera centre to the nearer screen edge, at zoom 1. */
const PLAY_HALF_VIEW = 66;
/** Where a spectator stands: its view reaches every wall from there. */
const CENTRE = { x: ARENA / 2, z: ARENA / 2 };
/** Log lines kept. */
const LOG_LINES = 9;

// Floor colours per arena kind: [floor, floor edge, grid, border].
const PALETTES = {
  0: ["#10151d", "#0b0f15", "120,150,190", "#4b6a8c"],
  1: ["#151a24", "#0d1119", "130,160,200", "#39c6ff"],
  2: ["#0f1c22", "#0a1318", "120,200,220", "#7ee8ff"],
  3: ["#111c15", "#0b130e", "140,200,150", "#6ee7a0"],
  4: ["#1f1a12", "#15110b", "220,190,140", "#ffc56b"],
};

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const g = canvas.getContext("2d");
const mini = $("minimap");
const mg = mini.getContext("2d");
const params = new URLSearchParams(location.search);

const state = {
  client: undefined,
  connected: false,
  busy: false,
  user: "",
  /** In an arena as a Player (on_arena arrived). */
  ready: false,
  kind: 0,
  game: 0,
  spectate: params.get("spectate") === "1",
  /** The own player's place as drawn: keys move it every frame; moves are sent from it. */
  pred: undefined,
  yaw: 0,
  /** The player.position object last seen: another one means the server (or anyone) placed it. */
  seenPos: undefined,
  holdUntil: 0,
  lastMoveAt: 0,
  dirty: false,
  moving: false,
  keys: new Set(),
  zoom: 1,
  mouse: { x: 0, y: 0, inside: false },
  /** Per entity id: { lastHp, hitAt, deathAt, attackAt, shootAt }. */
  fx: new Map(),
  /** Short-lived drawings: tracers, bites, damage numbers, muzzle flashes. */
  effects: [],
  scores: [],
  lastScoresAt: 0,
  /** What the last frame drew: id -> { x, y, r, type } in canvas CSS pixels. */
  drawn: new Map(),
  frames: 0,
  cam: { x: CENTRE.x, z: CENTRE.z, s: 3, w: 0, h: 0 },
  lastFrame: performance.now(),
  replies: [],
  unclaimed: [],
};

// ---------------------------------------------------------------- helpers

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

function hexOf(v) {
  if (v instanceof Uint8Array) return toHex(v);
  return typeof v === "string" ? v.toLowerCase() : "";
}

function me() {
  const p = state.client?.player;
  return p && p.typeName === "Player" ? p : undefined;
}

function nameOf(e) {
  const n = e?.attrs?.name;
  return typeof n === "string" && n !== "" ? n : e?.typeName === "Monster" ? "monster" : "someone";
}

function num(v, dflt = 0) {
  return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : dflt;
}

function hpOf(e) {
  return num(e.attrs.hp, num(e.attrs.hp_max, 100));
}

function alive(e) {
  return e !== undefined && hpOf(e) > 0 && e.attrs.action !== "dead";
}

/** A stable hue per name, away from the monsters' red. */
function hueOf(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return 35 + ((h >>> 0) % 290);
}

function fxOf(id) {
  let f = state.fx.get(id);
  if (!f) {
    f = { lastHp: undefined, hitAt: -1e9, deathAt: undefined, attackAt: -1e9, shootAt: -1e9 };
    state.fx.set(id, f);
  }
  return f;
}

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
}

/** Appends a line to the event log (text only: names come from other users). */
function log(text, kind = "") {
  const list = $("log-list");
  const li = el("li", kind);
  const t = new Date();
  li.append(el("time", "", `${String(t.getMinutes()).padStart(2, "0")}:${String(t.getSeconds()).padStart(2, "0")}`));
  li.append(document.createTextNode(text));
  list.append(li);
  while (list.children.length > LOG_LINES) list.firstElementChild.remove();
}

function loginMessage(text, kind = "") {
  const m = $("login-message");
  m.textContent = text;
  m.className = `message ${kind}`;
}

// ---------------------------------------------------------------- camera

function updateCamera(w, h) {
  const cam = state.cam;
  cam.w = w;
  cam.h = h;
  if (state.spectate || !state.ready || !state.pred) {
    // The whole arena (the login screen shows it too, drifting slowly).
    cam.s = (Math.min(w, h) / (ARENA + 24)) * (state.ready ? state.zoom : 1.05);
    if (state.ready) {
      cam.x = CENTRE.x;
      cam.z = CENTRE.z;
    } else {
      const t = performance.now() / 9000;
      cam.x = CENTRE.x + Math.cos(t) * 12;
      cam.z = CENTRE.z + Math.sin(t) * 12;
    }
  } else {
    cam.s = (Math.min(w, h) / 2 / PLAY_HALF_VIEW) * state.zoom;
    cam.x = state.pred.x;
    cam.z = state.pred.z;
  }
}

function toScreen(x, z) {
  const c = state.cam;
  return [c.w / 2 + (x - c.x) * c.s, c.h / 2 - (z - c.z) * c.s];
}

function toWorld(sx, sy) {
  const c = state.cam;
  return [c.x + (sx - c.w / 2) / c.s, c.z - (sy - c.h / 2) / c.s];
}

/** The screen direction of a yaw (degrees): +z is up. */
function yawDir(yaw) {
  const r = (yaw * Math.PI) / 180;
  return [Math.sin(r), -Math.cos(r)];
}

/** Where entity `e` is drawn now, in world units. */
function worldPos(e, now) {
  if (e === me() && state.pred) return { x: state.pred.x, z: state.pred.z, yaw: state.yaw };
  const p = e.interpolatedPosition(now);
  return { x: p.x, z: p.z, yaw: p.yaw };
}

// ---------------------------------------------------------------- connection and login

async function start() {
  let info;
  try {
    const r = await fetch("/oxworld.json", { cache: "no-store" });
    if (!r.ok) throw new Error(`GET /oxworld.json: ${r.status}`);
    info = await r.json();
  } catch (e) {
    loginMessage(`This page must be served by an oxworld gate (web_root): ${e.message}`, "error");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let client;
  try {
    client = await connect(`${scheme}://${location.host}/`, {
      serverKey: info.encrypt === false ? undefined : info.server_key,
      encrypt: info.encrypt !== false,
      // A lost connection (the gate died, the network dropped) resumes the same player.
      reconnect: { initialMs: 250, maxMs: 4000, maxAttempts: 30 },
    });
  } catch (e) {
    loginMessage(`Could not reach the gate: ${e.message}`, "error");
    return;
  }
  state.client = client;
  state.connected = true;
  wire(client);
  setBusy(false);
  loginMessage(state.spectate ? "Connected. Log in to spectate (a spectator is a player too)." : "Connected. Log in, or register a new name.");
  $("user").focus();
}

function setBusy(b) {
  state.busy = b;
  const off = b || !state.connected;
  $("login-button").disabled = off;
  $("register-button").disabled = off;
}

/** Resolves with the next answer to the account's requests: ["info" | "error" | "arena", text]. */
function nextReply(timeoutMs = 30_000) {
  if (state.unclaimed.length > 0) return Promise.resolve(state.unclaimed.shift());
  return new Promise((resolve) => {
    const entry = { resolve };
    state.replies.push(entry);
    setTimeout(() => {
      const i = state.replies.indexOf(entry);
      if (i >= 0) {
        state.replies.splice(i, 1);
        resolve(["error", "no answer from the server; try again"]);
      }
    }, timeoutMs);
  });
}

function reply(kind, text) {
  const r = state.replies.shift();
  if (r) r.resolve([kind, text]);
  else if (state.busy) state.unclaimed.push([kind, text]);
}

async function login(register) {
  if (state.busy || !state.connected) return;
  const user = $("user").value.trim();
  const password = $("password").value;
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(user)) {
    loginMessage("User names are 1-32 characters of A-Z a-z 0-9 _ -", "error");
    return;
  }
  if (password.length < 1 || password.length > 128) {
    loginMessage("Type a password (up to 128 characters).", "error");
    return;
  }
  const account = state.client.player;
  if (!account || account.typeName !== "Account") {
    loginMessage("Already logged in; reload the page to change users.", "error");
    return;
  }
  state.spectate = $("spectate").checked;
  setBusy(true);
  try {
    if (register) {
      loginMessage("Registering…");
      state.unclaimed = [];
      account.call("register", user, password);
      const [kind, text] = await nextReply();
      if (kind !== "info") {
        loginMessage(text, "error");
        return;
      }
    }
    loginMessage("Logging in…");
    state.user = user;
    account.call("login", user, password);
    // The player's show_info (welcome) comes first, then on_arena once it is in arena 1.
    for (;;) {
      const [kind, text] = await nextReply();
      if (kind === "error") {
        loginMessage(text, "error");
        return;
      }
      if (kind === "arena") break;
    }
    $("password").value = "";
  } catch (e) {
    loginMessage(e.message, "error");
  } finally {
    state.unclaimed = [];
    setBusy(false);
  }
}

function enterGame() {
  $("login").hidden = true;
  for (const id of ["hud", "board", "log", "bar", "minimap"]) $(id).hidden = false;
  updateModeUi();
  canvas.focus?.();
}

// ---------------------------------------------------------------- what the server tells

function wire(client) {
  client.onCall("show_info", ({ args }) => {
    const text = String(args[0] ?? "");
    if (!state.ready) loginMessage(text, "info");
    log(text);
    reply("info", text);
  });
  client.onCall("show_error", ({ args }) => {
    const text = String(args[0] ?? "");
    if (!state.ready) loginMessage(text, "error");
    log(text, "error");
    reply("error", text);
  });
  client.onCall("on_arena", ({ args }) => {
    const [kind, game, x, z] = args.map((a) => num(a));
    const first = !state.ready;
    state.kind = kind;
    state.game = game;
    placed(x, z);
    state.ready = true;
    if (first) enterGame();
    log(`entered arena ${kind} (${ARENA_NAMES[kind] ?? "?"}) on game ${game}`, "arena");
    askScores();
    reply("arena", "");
  });
  client.onCall("on_respawn", ({ args }) => {
    placed(num(args[0]), num(args[1]));
    log("back on your feet", "arena");
  });
  client.onCall("on_shoot", ({ args }) => shot(hexOf(args[0]), hexOf(args[1]), args[2] === true, num(args[3])));
  client.onCall("on_attack", ({ args }) => bite(hexOf(args[0]), hexOf(args[1])));
  client.onCall("on_scores", ({ args }) => {
    state.scores = Array.isArray(args[0]) ? args[0] : [];
    renderBoard();
  });
  client.onCall("on_test_monster", () => log("a test monster stands still nearby"));
  client.on("error", (err) => {
    // "Player.shoot: failed: out of range (60)" -> "shoot: out of range (60)".
    const why = String(err.reason || err.message)
      .replace(/^[A-Za-z_][\w]*\.[\w]+: /, "")
      .replace(/^failed: /, "");
    log(err.methodName ? `${err.methodName}: ${why}` : why, "error");
    if (!state.ready) reply("error", why);
  });
  client.on("entityCreated", (e) => {
    const f = fxOf(e.id);
    f.lastHp = hpOf(e);
    if (!alive(e)) f.deathAt = performance.now() - MONSTER_CORPSE_MS / 2;
  });
  client.on("entityDestroyed", (e) => state.fx.delete(e.id));
  client.on("attrChanged", ({ entity, path, value }) => attrChanged(entity, path, value));
  client.on("reconnecting", ({ attempt }) => {
    if (attempt === 1) log("connection lost; reconnecting…", "error");
  });
  client.on("resumed", ({ dropped }) => {
    log(dropped > 0 ? `reconnected (${dropped} messages missed)` : "reconnected", "arena");
  });
  // The player is gone (its game server died, or the session could not be resumed): the
  // server gives this connection a fresh account; log in again.
  const backToLogin = (text) => {
    state.ready = false;
    state.busy = false;
    for (const id of ["hud", "board", "log", "bar", "minimap"]) $(id).hidden = true;
    $("login").hidden = false;
    setBusy(false);
    loginMessage(text, "error");
  };
  client.on("playerLost", () => backToLogin("Your player was lost with its game server. Log in again."));
  client.on("error", (err) => {
    if (err.code === 13) backToLogin("Your session could not be resumed. Log in again.");
  });
  client.on("close", ({ reason }) => {
    state.connected = false;
    state.ready = false;
    $("login").hidden = false;
    setBusy(false);
    loginMessage(`Disconnected: ${reason}. Reload the page to play again.`, "error");
  });
}

/** The server placed the own player (arena entry, respawn): draw it there, hold still briefly. */
function placed(x, z) {
  state.pred = { x, z };
  state.holdUntil = performance.now() + HOLD_MS;
  state.dirty = false;
  state.seenPos = me()?.position;
}

function attrChanged(e, path, value) {
  if (path.length !== 1) return;
  const now = performance.now();
  const f = fxOf(e.id);
  const own = e === me();
  switch (path[0]) {
    case "hp": {
      const hp = num(value);
      const before = f.lastHp ?? hp;
      if (hp < before) {
        f.hitAt = now;
        // Numbers in quick succession fan out instead of piling up.
        f.dmgSeq = now - (f.dmgAt ?? -1e9) < 500 ? (f.dmgSeq ?? 0) + 1 : 0;
        f.dmgAt = now;
        const jitter = [0, 16, -16][f.dmgSeq % 3];
        state.effects.push({ kind: "damage", id: e.id, amount: before - hp, t0: now, dur: 900, jitter, lift: (f.dmgSeq % 4) * 15 });
      }
      if (hp <= 0 && before > 0) {
        f.deathAt = now;
        if (own) log("you are down; respawning in 3 s", "hurt");
      }
      if (hp > 0) f.deathAt = undefined;
      f.lastHp = hp;
      break;
    }
    case "action":
      if (value === "dead" && f.deathAt === undefined) f.deathAt = now;
      break;
    case "score":
      if (own && num(value) > 0) log(`score ${num(value)}`, "kill");
      break;
    case "level":
      if (own && num(value) > 1) log(`level up: ${num(value)}!`, "kill");
      break;
  }
}

function shot(shooterId, targetId, hit, damage) {
  const c = state.client;
  const shooter = c.entities.get(shooterId);
  const target = c.entities.get(targetId);
  const now = performance.now();
  fxOf(shooterId).shootAt = now;
  // A miss flies past the target, to one side.
  const side = (Math.random() < 0.5 ? -1 : 1) * (6 + Math.random() * 10);
  state.effects.push({ kind: "tracer", from: shooterId, to: targetId, hit, side, t0: now, dur: hit ? 420 : 360 });
  const mine = me();
  if (mine && shooterId === mine.id) {
    log(hit ? `you hit ${nameOf(target)} (−${damage})` : `you missed ${nameOf(target)}`, hit ? "hit" : "miss");
  } else if (mine && targetId === mine.id) {
    log(hit ? `${nameOf(shooter)} shot you (−${damage})` : `${nameOf(shooter)} shot at you and missed`, hit ? "hurt" : "miss");
  }
}

function bite(monsterId, targetId) {
  const now = performance.now();
  fxOf(monsterId).attackAt = now;
  state.effects.push({ kind: "bite", from: monsterId, to: targetId, t0: now, dur: 380 });
  const mine = me();
  if (mine && targetId === mine.id) log("a monster bites you (−5)", "hurt");
}

function askScores() {
  const p = me();
  if (!p || !state.client?.isOpen) return;
  state.lastScoresAt = performance.now();
  try {
    p.call("scores");
  } catch {
    // Closed meanwhile: the close handler tells.
  }
}

function renderBoard() {
  const list = $("board-list");
  list.replaceChildren();
  for (const entry of state.scores.slice(0, 10)) {
    if (!Array.isArray(entry)) continue;
    const li = el("li", String(entry[0]) === state.user ? "me" : "");
    li.append(el("span", "n", String(entry[0])), el("b", "", String(num(entry[1]))));
    list.append(li);
  }
  $("board-empty").hidden = list.children.length > 0;
}

// ---------------------------------------------------------------- input

const MOVE_KEYS = {
  KeyW: [0, 1],
  ArrowUp: [0, 1],
  KeyS: [0, -1],
  ArrowDown: [0, -1],
  KeyA: [-1, 0],
  ArrowLeft: [-1, 0],
  KeyD: [1, 0],
  ArrowRight: [1, 0],
};

function typing(ev) {
  const t = ev.target;
  return t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement;
}

addEventListener("keydown", (ev) => {
  if (typing(ev) || !state.ready) return;
  if (ev.code in MOVE_KEYS) {
    state.keys.add(ev.code);
    ev.preventDefault();
  } else if (/^Digit[1-9]$/.test(ev.code)) {
    goArena(Number(ev.code.slice(5)));
  } else if (ev.code === "KeyV" && !ev.repeat) {
    toggleSpectate();
  }
});
addEventListener("keyup", (ev) => state.keys.delete(ev.code));
addEventListener("blur", () => state.keys.clear());

function goArena(kind) {
  const p = me();
  if (!p) return;
  if (kind < 1 || kind > ARENA_KINDS) return;
  if (kind === state.kind) {
    log(`already in arena ${kind}`);
    return;
  }
  log(`heading for arena ${kind} (${ARENA_NAMES[kind]})…`, "arena");
  p.call("go_arena", kind);
}

function toggleSpectate() {
  state.spectate = !state.spectate;
  state.zoom = 1;
  log(state.spectate ? "spectating: walking to the centre, the camera shows the whole arena" : "playing: the camera follows you", "arena");
  updateModeUi();
}

function updateModeUi() {
  const t = $("spectate-toggle");
  t.setAttribute("aria-pressed", String(state.spectate));
  $("hud-mode").textContent = state.spectate ? "◉ spectating from the centre (V to play)" : "";
}

for (const b of document.querySelectorAll("[data-arena]")) {
  b.addEventListener("click", () => goArena(Number(b.dataset.arena)));
}
$("spectate-toggle").addEventListener("click", (ev) => {
  toggleSpectate();
  ev.currentTarget.blur();
});

canvas.addEventListener("mousemove", (ev) => {
  state.mouse.x = ev.clientX;
  state.mouse.y = ev.clientY;
  state.mouse.inside = true;
});
canvas.addEventListener("mouseleave", () => (state.mouse.inside = false));
canvas.addEventListener(
  "wheel",
  (ev) => {
    if (!state.ready) return;
    ev.preventDefault();
    state.zoom = clamp(state.zoom * Math.exp(-ev.deltaY * 0.0015), 0.5, 2.5);
  },
  { passive: false },
);

/** The live entity drawn nearest to (x, y) within its radius plus a few pixels, if any. */
function pick(x, y) {
  const own = me();
  let best;
  let bestD = Infinity;
  for (const [id, d] of state.drawn) {
    if (own && id === own.id) continue;
    const e = state.client.entities.get(id);
    if (!alive(e)) continue;
    const dist = Math.hypot(d.x - x, d.y - y);
    if (dist <= d.r + 6 && dist < bestD) {
      best = e;
      bestD = dist;
    }
  }
  return best;
}

canvas.addEventListener("mousedown", (ev) => {
  if (ev.button !== 0 || !state.ready) return;
  const p = me();
  if (!p) return;
  const r = canvas.getBoundingClientRect();
  const target = pick(ev.clientX - r.left, ev.clientY - r.top);
  if (!target) return;
  if (state.spectate) {
    log("spectators do not shoot (V to play)");
    return;
  }
  if (!alive(p)) {
    log("the dead do not shoot", "error");
    return;
  }
  // Turn to face it (the next move carries the yaw to everyone else).
  const t = target.interpolatedPosition(performance.now());
  if (state.pred) {
    state.yaw = (Math.atan2(t.x - state.pred.x, t.z - state.pred.z) * 180) / Math.PI;
    state.dirty = true;
  }
  p.call("shoot", target.idBytes);
});

// ---------------------------------------------------------------- movement

function step(now, dt) {
  const p = me();
  if (!p || !state.ready) return;
  // A new position object: the server (or someone with the client) placed the player.
  if (p.position !== state.seenPos) {
    state.pred = { x: p.position.x, z: p.position.z };
    state.yaw = p.position.yaw;
    state.seenPos = p.position;
  }
  if (!state.pred) return;
  const canMove = alive(p) && state.kind >= 1 && now >= state.holdUntil;
  let dx = 0;
  let dz = 0;
  if (state.spectate) {
    const ox = CENTRE.x - state.pred.x;
    const oz = CENTRE.z - state.pred.z;
    const d = Math.hypot(ox, oz);
    if (d > 0.5) {
      dx = ox / d;
      dz = oz / d;
      dt = Math.min(dt, d / SPEED);
    }
  } else {
    for (const k of state.keys) {
      const v = MOVE_KEYS[k];
      if (v) {
        dx += v[0];
        dz += v[1];
      }
    }
    const n = Math.hypot(dx, dz);
    if (n > 0) {
      dx /= n;
      dz /= n;
    }
  }
  const moving = canMove && (dx !== 0 || dz !== 0);
  if (moving) {
    state.pred.x = clamp(state.pred.x + dx * SPEED * dt, 0, ARENA);
    state.pred.z = clamp(state.pred.z + dz * SPEED * dt, 0, ARENA);
    state.yaw = (Math.atan2(dx, dz) * 180) / Math.PI;
    state.dirty = true;
  }
  if (moving !== state.moving && alive(p)) {
    state.moving = moving;
    try {
      p.call("set_action", moving ? "move" : "idle");
    } catch {
      // Closed: the close handler tells.
    }
  }
  if (state.dirty && canMove && now - state.lastMoveAt >= MOVE_EVERY_MS) {
    try {
      state.client.move({ x: state.pred.x, y: 0, z: state.pred.z, yaw: state.yaw });
      state.seenPos = p.position;
    } catch {
      // Closed: the close handler tells.
    }
    state.lastMoveAt = now;
    state.dirty = false;
  }
  if (now - state.lastScoresAt >= SCORES_EVERY_MS) askScores();
}

// ---------------------------------------------------------------- drawing

function fit() {
  const dpr = Math.min(window.devicePixelRatio || 1, 2);
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [w, h];
}

function drawFloor(now) {
  const { w, h, s } = state.cam;
  const [floor, floorEdge, grid, border] = PALETTES[state.kind] ?? PALETTES[0];
  // The void around the arena.
  const bg = g.createRadialGradient(w / 2, h / 2, 0, w / 2, h / 2, Math.max(w, h) * 0.75);
  bg.addColorStop(0, "#0a0d13");
  bg.addColorStop(1, "#040507");
  g.fillStyle = bg;
  g.fillRect(0, 0, w, h);
  const [x0, y0] = toScreen(0, ARENA);
  const size = ARENA * s;
  // Floor.
  const fl = g.createRadialGradient(x0 + size / 2, y0 + size / 2, size * 0.1, x0 + size / 2, y0 + size / 2, size * 0.75);
  fl.addColorStop(0, floor);
  fl.addColorStop(1, floorEdge);
  g.fillStyle = fl;
  g.fillRect(x0, y0, size, size);
  // Grid: every 10 units, stronger every 50.
  g.lineWidth = 1;
  for (let u = 10; u < ARENA; u += 10) {
    g.strokeStyle = u % 50 === 0 ? `rgba(${grid},0.2)` : `rgba(${grid},0.085)`;
    const [sx] = toScreen(u, 0);
    const [, sy] = toScreen(0, u);
    g.beginPath();
    g.moveTo(Math.round(sx) + 0.5, y0);
    g.lineTo(Math.round(sx) + 0.5, y0 + size);
    g.moveTo(x0, Math.round(sy) + 0.5);
    g.lineTo(x0 + size, Math.round(sy) + 0.5);
    g.stroke();
  }
  // Centre mark and the arena's name on the floor.
  const [cx, cy] = toScreen(CENTRE.x, CENTRE.z);
  g.strokeStyle = `rgba(${grid},0.2)`;
  g.lineWidth = 2;
  g.beginPath();
  g.arc(cx, cy, 16 * s, 0, Math.PI * 2);
  g.stroke();
  g.beginPath();
  g.arc(cx, cy, 3 * s, 0, Math.PI * 2);
  g.stroke();
  if (state.kind >= 1 && state.spectate) {
    // The arena's name on the floor, when the whole arena shows.
    g.save();
    g.fillStyle = `rgba(${grid},0.055)`;
    g.font = `800 ${Math.round(11 * s)}px system-ui, sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText((ARENA_NAMES[state.kind] ?? "").toUpperCase(), cx, cy - 34 * s);
    g.restore();
  }
  // Border: a glowing wall with corner brackets.
  g.save();
  g.shadowColor = border;
  g.shadowBlur = 14;
  g.strokeStyle = border;
  g.globalAlpha = 0.85;
  g.lineWidth = 2.5;
  g.strokeRect(x0, y0, size, size);
  g.globalAlpha = 1;
  g.lineWidth = 4;
  const k = Math.min(26, size / 8);
  for (const [px, py, ddx, ddy] of [
    [x0, y0, 1, 1],
    [x0 + size, y0, -1, 1],
    [x0, y0 + size, 1, -1],
    [x0 + size, y0 + size, -1, -1],
  ]) {
    g.beginPath();
    g.moveTo(px + ddx * k, py);
    g.lineTo(px, py);
    g.lineTo(px, py + ddy * k);
    g.stroke();
  }
  g.restore();
  // A faint pulse along the wall, so a still picture still feels alive.
  const pulse = 0.5 + 0.5 * Math.sin(now / 700);
  g.strokeStyle = border;
  g.globalAlpha = 0.12 + 0.1 * pulse;
  g.lineWidth = 8;
  g.strokeRect(x0 - 5, y0 - 5, size + 10, size + 10);
  g.globalAlpha = 1;
}

/** The own player's view (AOI radius): lit inside, fogged outside; and the shot range. */
function drawView(pos) {
  const { w, h, s } = state.cam;
  const [cx, cy] = toScreen(pos.x, pos.z);
  const r = VIEW_RADIUS * s;
  g.save();
  g.beginPath();
  g.rect(0, 0, w, h);
  g.arc(cx, cy, r, 0, Math.PI * 2, true);
  g.fillStyle = "rgba(2,4,8,0.5)";
  g.fill("evenodd");
  // A soft edge inside the circle.
  const edge = g.createRadialGradient(cx, cy, r * 0.82, cx, cy, r);
  edge.addColorStop(0, "rgba(2,4,8,0)");
  edge.addColorStop(1, "rgba(2,4,8,0.32)");
  g.fillStyle = edge;
  g.beginPath();
  g.arc(cx, cy, r, 0, Math.PI * 2);
  g.fill();
  const light = g.createRadialGradient(cx, cy, 0, cx, cy, r);
  light.addColorStop(0, "rgba(120,200,255,0.07)");
  light.addColorStop(1, "rgba(120,200,255,0)");
  g.fillStyle = light;
  g.fill();
  g.strokeStyle = "rgba(140,205,255,0.28)";
  g.lineWidth = 1.5;
  g.stroke();
  if (!state.spectate) {
    g.setLineDash([4, 7]);
    g.strokeStyle = "rgba(255,255,255,0.13)";
    g.lineWidth = 1;
    g.beginPath();
    g.arc(cx, cy, SHOOT_RANGE * s, 0, Math.PI * 2);
    g.stroke();
    g.setLineDash([]);
  }
  g.restore();
}

/** Sprite radius in pixels: about two units, within readable bounds at any zoom. */
function spriteRadius(e) {
  const units = e.typeName === "Monster" ? 2.6 : 2.45;
  return clamp(units * state.cam.s, 8, 20);
}

/** Alpha and greyness of an entity: dead ones grey out and (monsters) fade away. */
function lifeLook(e, f, now) {
  if (alive(e)) return { alpha: 1, grey: false };
  const since = f.deathAt === undefined ? 0 : now - f.deathAt;
  if (e.typeName === "Monster") return { alpha: clamp(1 - (0.8 * since) / MONSTER_CORPSE_MS, 0.2, 1), grey: true };
  return { alpha: 0.55, grey: true };
}

function drawPlayer(e, x, y, yaw, f, now, own) {
  const r = spriteRadius(e);
  const { alpha, grey } = lifeLook(e, f, now);
  const hue = hueOf(nameOf(e));
  const body = grey ? "#5b6470" : `hsl(${hue} 72% 56%)`;
  const dark = grey ? "#343a42" : `hsl(${hue} 60% 30%)`;
  const [ux, uy] = yawDir(yaw);
  g.save();
  g.globalAlpha = alpha;
  // Shadow.
  g.fillStyle = "rgba(0,0,0,0.45)";
  g.beginPath();
  g.ellipse(x + 2, y + 4, r * 1.05, r * 0.8, 0, 0, Math.PI * 2);
  g.fill();
  if (own && !grey) {
    const pulse = 0.5 + 0.5 * Math.sin(now / 260);
    g.strokeStyle = `rgba(120,220,255,${0.35 + 0.35 * pulse})`;
    g.lineWidth = 2;
    g.beginPath();
    g.arc(x, y, r + 6 + 2 * pulse, 0, Math.PI * 2);
    g.stroke();
  }
  // Gun barrel along the yaw, with a muzzle flash right after a shot.
  if (!grey) {
    g.strokeStyle = "#1b2028";
    g.lineWidth = 5;
    g.lineCap = "round";
    g.beginPath();
    g.moveTo(x + ux * r * 0.3, y + uy * r * 0.3);
    g.lineTo(x + ux * (r + 7), y + uy * (r + 7));
    g.stroke();
    g.strokeStyle = "#9aa6b4";
    g.lineWidth = 2;
    g.stroke();
    const since = now - f.shootAt;
    if (since < 120) {
      g.fillStyle = `rgba(255,220,120,${1 - since / 120})`;
      g.beginPath();
      g.arc(x + ux * (r + 9), y + uy * (r + 9), 5, 0, Math.PI * 2);
      g.fill();
    }
  }
  // Body.
  const grad = g.createRadialGradient(x - r * 0.35, y - r * 0.4, r * 0.15, x, y, r);
  grad.addColorStop(0, grey ? "#8a929c" : `hsl(${hue} 85% 72%)`);
  grad.addColorStop(1, body);
  g.fillStyle = grad;
  g.beginPath();
  g.arc(x, y, r, 0, Math.PI * 2);
  g.fill();
  g.lineWidth = own ? 2.5 : 2;
  g.strokeStyle = own && !grey ? "#ffffff" : dark;
  g.stroke();
  // Direction notch.
  if (!grey) {
    g.fillStyle = "rgba(255,255,255,0.9)";
    g.beginPath();
    g.moveTo(x + ux * (r - 1), y + uy * (r - 1));
    g.lineTo(x + ux * (r - 7) - uy * 4, y + uy * (r - 7) + ux * 4);
    g.lineTo(x + ux * (r - 7) + uy * 4, y + uy * (r - 7) - ux * 4);
    g.closePath();
    g.fill();
  } else {
    // A cross for the fallen.
    g.strokeStyle = "#1d2128";
    g.lineWidth = 2.5;
    g.beginPath();
    g.moveTo(x - 4, y - 4);
    g.lineTo(x + 4, y + 4);
    g.moveTo(x + 4, y - 4);
    g.lineTo(x - 4, y + 4);
    g.stroke();
  }
  hitFlash(x, y, r, f, now);
  g.restore();
}

function drawMonster(e, x, y, yaw, f, now) {
  const r = spriteRadius(e);
  const { alpha, grey } = lifeLook(e, f, now);
  const action = e.attrs.action;
  const sinceAttack = now - f.attackAt;
  const lunge = !grey && sinceAttack < 250 ? Math.sin((sinceAttack / 250) * Math.PI) : 0;
  const [ux, uy] = yawDir(yaw);
  const cx = x + ux * lunge * 5;
  const cy = y + uy * lunge * 5;
  const spin = grey ? 0 : now / (action === "move" ? 420 : 900);
  const spikes = 9;
  g.save();
  g.globalAlpha = alpha;
  g.fillStyle = "rgba(0,0,0,0.45)";
  g.beginPath();
  g.ellipse(cx + 2, cy + 4, r, r * 0.75, 0, 0, Math.PI * 2);
  g.fill();
  if (!grey) {
    const aura = g.createRadialGradient(cx, cy, r * 0.5, cx, cy, r * 2.1);
    aura.addColorStop(0, `rgba(255,40,40,${0.22 + 0.3 * lunge})`);
    aura.addColorStop(1, "rgba(255,40,40,0)");
    g.fillStyle = aura;
    g.beginPath();
    g.arc(cx, cy, r * 2.1, 0, Math.PI * 2);
    g.fill();
  }
  g.beginPath();
  for (let i = 0; i < spikes * 2; i++) {
    const a = spin + (i * Math.PI) / spikes;
    const rr = i % 2 === 0 ? r * (1.12 + 0.12 * lunge) : r * 0.62;
    const px = cx + Math.cos(a) * rr;
    const py = cy + Math.sin(a) * rr;
    if (i === 0) g.moveTo(px, py);
    else g.lineTo(px, py);
  }
  g.closePath();
  const body = g.createRadialGradient(cx - 3, cy - 3, 1, cx, cy, r * 1.1);
  if (grey) {
    body.addColorStop(0, "#6b6f76");
    body.addColorStop(1, "#3a3d42");
  } else {
    body.addColorStop(0, "#ff7a6b");
    body.addColorStop(0.55, "#e0262d");
    body.addColorStop(1, "#7c0b14");
  }
  g.fillStyle = body;
  g.fill();
  g.lineWidth = 1.5;
  g.strokeStyle = grey ? "#2a2c30" : "#3d0408";
  g.stroke();
  // Eyes, looking where it faces.
  const px = -uy;
  const py = ux;
  for (const side of [-1, 1]) {
    const ex = cx + ux * 3.5 + px * side * 3.6;
    const ey = cy + uy * 3.5 + py * side * 3.6;
    g.fillStyle = grey ? "#222" : "#ffe14d";
    g.beginPath();
    g.arc(ex, ey, 2.4, 0, Math.PI * 2);
    g.fill();
    if (!grey) {
      g.fillStyle = "#200";
      g.beginPath();
      g.arc(ex + ux * 0.9, ey + uy * 0.9, 1.1, 0, Math.PI * 2);
      g.fill();
    }
  }
  hitFlash(cx, cy, r, f, now);
  g.restore();
}

function hitFlash(x, y, r, f, now) {
  const since = now - f.hitAt;
  if (since >= 220) return;
  const a = 1 - since / 220;
  g.globalCompositeOperation = "lighter";
  g.fillStyle = `rgba(255,255,255,${0.55 * a})`;
  g.beginPath();
  g.arc(x, y, r + 2, 0, Math.PI * 2);
  g.fill();
  g.globalCompositeOperation = "source-over";
  g.strokeStyle = `rgba(255,240,200,${a})`;
  g.lineWidth = 2;
  g.beginPath();
  g.arc(x, y, r + 4 + (1 - a) * 10, 0, Math.PI * 2);
  g.stroke();
}

function hpColor(ratio) {
  return ratio > 0.6 ? "#4ade80" : ratio > 0.3 ? "#facc15" : "#f87171";
}

function drawLabel(e, x, y, own) {
  const r = spriteRadius(e);
  const hp = hpOf(e);
  const max = Math.max(1, num(e.attrs.hp_max, 100));
  const ratio = clamp(hp / max, 0, 1);
  const w = Math.max(30, r * 2.6);
  const by = y - r - 10;
  g.save();
  g.globalAlpha = alive(e) ? 1 : 0.55;
  g.fillStyle = "rgba(0,0,0,0.65)";
  g.fillRect(x - w / 2 - 1, by - 1, w + 2, 6);
  g.fillStyle = hpColor(ratio);
  g.fillRect(x - w / 2, by, w * ratio, 4);
  const level = e.typeName === "Player" ? ` · ${num(e.attrs.level, 1)}` : "";
  const text = `${nameOf(e)}${level}`;
  g.font = e.typeName === "Player" ? "600 12px system-ui, sans-serif" : "500 10.5px system-ui, sans-serif";
  g.textAlign = "center";
  g.textBaseline = "bottom";
  g.lineWidth = 3;
  g.strokeStyle = "rgba(0,0,0,0.8)";
  g.strokeText(text, x, by - 3);
  g.fillStyle = own ? "#9fe6ff" : e.typeName === "Monster" ? "#ffb3ad" : "#eef3f8";
  g.fillText(text, x, by - 3);
  g.restore();
}

function drawEffects(now, at) {
  const keep = [];
  for (const fx of state.effects) {
    const t = (now - fx.t0) / fx.dur;
    if (t >= 1) continue;
    keep.push(fx);
    if (fx.kind === "tracer") {
      const a = at(fx.from);
      const b = at(fx.to);
      if (!a || !b) continue;
      let [bx, by] = b;
      const len = Math.hypot(bx - a[0], by - a[1]) || 1;
      const ux = (bx - a[0]) / len;
      const uy = (by - a[1]) / len;
      if (!fx.hit) {
        // Past the target, off to one side.
        bx += ux * 40 - uy * fx.side;
        by += uy * 40 + ux * fx.side;
      }
      const sx = a[0] + ux * 14;
      const sy = a[1] + uy * 14;
      const fade = 1 - t;
      g.save();
      g.lineCap = "round";
      if (fx.hit) {
        g.shadowColor = "#ff9a1f";
        g.shadowBlur = 12;
        g.strokeStyle = `rgba(255,170,40,${0.55 * fade})`;
        g.lineWidth = 5;
        g.beginPath();
        g.moveTo(sx, sy);
        g.lineTo(bx, by);
        g.stroke();
        g.strokeStyle = `rgba(255,246,200,${fade})`;
        g.lineWidth = 2;
        g.stroke();
        // Impact burst.
        g.shadowBlur = 0;
        g.strokeStyle = `rgba(255,200,80,${fade})`;
        g.lineWidth = 2;
        for (let i = 0; i < 6; i++) {
          const ang = (i / 6) * Math.PI * 2 + fx.t0;
          const r0 = 4 + 10 * t;
          const r1 = r0 + 6;
          g.beginPath();
          g.moveTo(bx + Math.cos(ang) * r0, by + Math.sin(ang) * r0);
          g.lineTo(bx + Math.cos(ang) * r1, by + Math.sin(ang) * r1);
          g.stroke();
        }
      } else {
        g.setLineDash([6, 5]);
        g.strokeStyle = `rgba(150,190,255,${0.75 * fade})`;
        g.lineWidth = 1.5;
        g.beginPath();
        g.moveTo(sx, sy);
        g.lineTo(bx, by);
        g.stroke();
        g.setLineDash([]);
        g.fillStyle = `rgba(170,200,255,${0.5 * fade})`;
        g.beginPath();
        g.arc(bx, by, 3 + 5 * t, 0, Math.PI * 2);
        g.fill();
      }
      g.restore();
    } else if (fx.kind === "bite") {
      const b = at(fx.to);
      if (!b) continue;
      const fade = 1 - t;
      g.save();
      g.strokeStyle = `rgba(255,60,60,${fade})`;
      g.lineWidth = 2.5;
      g.lineCap = "round";
      for (let i = -1; i <= 1; i++) {
        g.beginPath();
        g.moveTo(b[0] - 9 + i * 4, b[1] - 9 - i * 4 + t * 4);
        g.lineTo(b[0] + 9 + i * 4, b[1] + 9 - i * 4 + t * 4);
        g.stroke();
      }
      g.strokeStyle = `rgba(255,80,80,${0.5 * fade})`;
      g.beginPath();
      g.arc(b[0], b[1], 14 + 10 * t, 0, Math.PI * 2);
      g.stroke();
      g.restore();
    } else if (fx.kind === "damage") {
      const b = at(fx.id);
      if (!b) continue;
      const d = state.drawn.get(fx.id);
      // Pops, then rises above the name and fades.
      const pop = t < 0.15 ? 0.6 + (t / 0.15) * 0.6 : 1.2 - Math.min(0.2, (t - 0.15) * 0.5);
      const y = b[1] - (d?.r ?? 12) - 30 - fx.lift - 28 * t;
      g.save();
      g.globalAlpha = 1 - t * t;
      g.translate(b[0] + fx.jitter, y);
      g.scale(pop, pop);
      g.font = "800 14px system-ui, sans-serif";
      g.textAlign = "center";
      g.lineWidth = 3.5;
      g.strokeStyle = "rgba(0,0,0,0.85)";
      g.strokeText(`−${fx.amount}`, 0, 0);
      g.fillStyle = fx.amount >= 20 ? "#ffcf4a" : "#ff8080";
      g.fillText(`−${fx.amount}`, 0, 0);
      g.restore();
    }
  }
  state.effects = keep;
}

/** A reticle on the live target under the mouse (red in range, grey out of it). */
function drawReticle(now) {
  if (!state.mouse.inside || !state.ready) return;
  const r = canvas.getBoundingClientRect();
  const target = pick(state.mouse.x - r.left, state.mouse.y - r.top);
  if (!target) return;
  const d = state.drawn.get(target.id);
  const p = me();
  let inRange = false;
  if (p && state.pred) {
    const t = target.interpolatedPosition(now);
    inRange = Math.hypot(t.x - state.pred.x, t.z - state.pred.z) <= SHOOT_RANGE && !state.spectate;
  }
  const rr = d.r + 7 + Math.sin(now / 120) * 1.5;
  g.save();
  g.strokeStyle = inRange ? "#ff5a5a" : "rgba(200,210,220,0.6)";
  g.lineWidth = 2;
  for (let i = 0; i < 4; i++) {
    const a = (i * Math.PI) / 2 + now / 900;
    g.beginPath();
    g.arc(d.x, d.y, rr, a + 0.25, a + Math.PI / 2 - 0.25);
    g.stroke();
  }
  g.restore();
}

function drawMinimap(now) {
  const W = mini.width;
  const pad = 10;
  const s = (W - 2 * pad) / ARENA;
  const to = (x, z) => [pad + x * s, pad + (ARENA - z) * s];
  const [, floorEdge, grid, border] = PALETTES[state.kind] ?? PALETTES[0];
  mg.clearRect(0, 0, W, W);
  mg.fillStyle = floorEdge;
  mg.fillRect(pad, pad, ARENA * s, ARENA * s);
  mg.strokeStyle = `rgba(${grid},0.12)`;
  mg.lineWidth = 1;
  for (let u = 50; u < ARENA; u += 50) {
    mg.beginPath();
    mg.moveTo(pad + u * s, pad);
    mg.lineTo(pad + u * s, pad + ARENA * s);
    mg.moveTo(pad, pad + u * s);
    mg.lineTo(pad + ARENA * s, pad + u * s);
    mg.stroke();
  }
  mg.strokeStyle = border;
  mg.lineWidth = 1.5;
  mg.strokeRect(pad, pad, ARENA * s, ARENA * s);
  const own = me();
  if (own && state.pred) {
    const [cx, cy] = to(state.pred.x, state.pred.z);
    mg.fillStyle = "rgba(120,200,255,0.08)";
    mg.strokeStyle = "rgba(140,205,255,0.35)";
    mg.beginPath();
    mg.arc(cx, cy, VIEW_RADIUS * s, 0, Math.PI * 2);
    mg.fill();
    mg.stroke();
    if (!state.spectate) {
      // The camera's window.
      const c = state.cam;
      const [wx0, wz0] = toWorld(0, 0);
      const [wx1, wz1] = toWorld(c.w, c.h);
      const [ax, ay] = to(wx0, wz0);
      const [bx, by] = to(wx1, wz1);
      mg.strokeStyle = "rgba(255,255,255,0.25)";
      mg.strokeRect(ax, ay, bx - ax, by - ay);
    }
  }
  for (const e of state.client?.entities.values() ?? []) {
    if (e.typeName !== "Player" && e.typeName !== "Monster") continue;
    const p = worldPos(e, now);
    const [x, y] = to(p.x, p.z);
    const dead = !alive(e);
    mg.fillStyle = dead ? "#555b63" : e.typeName === "Monster" ? "#ff4040" : e === own ? "#ffffff" : `hsl(${hueOf(nameOf(e))} 72% 60%)`;
    mg.beginPath();
    mg.arc(x, y, e === own ? 3.2 : 2.3, 0, Math.PI * 2);
    mg.fill();
  }
}

function updateHud(now) {
  const p = me();
  if (!p) return;
  const hp = hpOf(p);
  const max = Math.max(1, num(p.attrs.hp_max, 100));
  const ratio = clamp(hp / max, 0, 1);
  $("hud-name").textContent = nameOf(p);
  $("hud-swatch").style.background = `hsl(${hueOf(nameOf(p))} 72% 56%)`;
  $("hud-level").textContent = String(num(p.attrs.level, 1));
  $("hud-hp").textContent = `${hp} / ${max}`;
  const fill = $("hud-hpfill");
  fill.style.width = `${ratio * 100}%`;
  fill.style.background =
    ratio > 0.6 ? "linear-gradient(180deg,#6ef29a,#22a85a)" : ratio > 0.3 ? "linear-gradient(180deg,#fde047,#ca8a04)" : "linear-gradient(180deg,#fca5a5,#dc2626)";
  $("hud-score").textContent = String(num(p.attrs.score));
  $("hud-arena").textContent = state.kind >= 1 ? `${state.kind} · ${ARENA_NAMES[state.kind] ?? "?"}` : "–";
  $("hud-game").textContent = state.game ? `game${state.game}` : "–";
  let monsters = 0;
  let players = 0;
  for (const e of state.client.entities.values()) {
    if (e.typeName === "Monster") monsters++;
    else if (e.typeName === "Player" && e !== p) players++;
  }
  $("hud-view").textContent = `${monsters} monster${monsters === 1 ? "" : "s"}, ${players} player${players === 1 ? "" : "s"}`;
  for (const b of document.querySelectorAll("[data-arena]")) b.classList.toggle("current", Number(b.dataset.arena) === state.kind);
  const banner = $("banner");
  const f = state.fx.get(p.id);
  if (!alive(p)) {
    const left = f?.deathAt === undefined ? 3 : Math.max(0, Math.ceil((RESPAWN_MS - (now - f.deathAt)) / 1000));
    if (banner.hidden || banner.dataset.left !== String(left)) {
      banner.replaceChildren(document.createTextNode("You are down"), el("small", "", left > 0 ? `respawning in ${left} s` : "respawning…"));
      banner.dataset.left = String(left);
    }
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

function frame() {
  const now = performance.now();
  const dt = Math.min(0.1, (now - state.lastFrame) / 1000);
  state.lastFrame = now;
  try {
    step(now, dt);
    const [w, h] = fit();
    updateCamera(w, h);
    drawFloor(now);
    const own = me();
    const drawn = new Map();
    const list = [];
    if (state.client && state.ready) {
      for (const e of state.client.entities.values()) {
        if (e.typeName !== "Player" && e.typeName !== "Monster") continue;
        const p = worldPos(e, now);
        const [x, y] = toScreen(p.x, p.z);
        list.push({ e, x, y, yaw: p.yaw, own: e === own, dead: !alive(e) });
        drawn.set(e.id, { x, y, r: spriteRadius(e), type: e.typeName });
      }
      if (own && state.pred) drawView(state.pred);
      // The dead below, then monsters, players, and the own player on top.
      const rank = (d) => (d.dead ? 0 : d.own ? 3 : d.e.typeName === "Monster" ? 1 : 2);
      list.sort((a, b) => rank(a) - rank(b));
      for (const d of list) {
        const f = fxOf(d.e.id);
        if (d.e.typeName === "Monster") drawMonster(d.e, d.x, d.y, d.yaw, f, now);
        else drawPlayer(d.e, d.x, d.y, d.yaw, f, now, d.own);
      }
      drawEffects(now, (id) => {
        const d = drawn.get(id);
        return d ? [d.x, d.y] : undefined;
      });
      for (const d of list) drawLabel(d.e, d.x, d.y, d.own);
    }
    state.drawn = drawn;
    drawReticle(now);
    if (state.ready) {
      drawMinimap(now);
      updateHud(now);
    }
    state.frames++;
  } catch (e) {
    console.error(e);
  }
  requestAnimationFrame(frame);
}

// ---------------------------------------------------------------- the page

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void login(false);
});
$("register-button").addEventListener("click", () => void login(true));
$("spectate").checked = state.spectate;

// Read-only hooks for tests and the curious: the client (its replica), whether the player is
// in an arena, and where the last frame drew each entity (viewport CSS pixels).
Object.defineProperty(window, "__arena", {
  value: Object.freeze({
    get client() {
      return state.client;
    },
    get ready() {
      return state.ready;
    },
    get kind() {
      return state.kind;
    },
    get game() {
      return state.game;
    },
    get spectate() {
      return state.spectate;
    },
    get frames() {
      return state.frames;
    },
    /** Where the last frame drew entity `id` (hex), in viewport CSS pixels; null if it did not. */
    screenOf(id) {
      const d = state.drawn.get(String(id).toLowerCase());
      if (!d) return null;
      const r = canvas.getBoundingClientRect();
      return { x: r.left + d.x, y: r.top + d.y, r: d.r };
    },
    /** How many entities of each type the last frame drew. */
    drawnTypes() {
      const out = {};
      for (const d of state.drawn.values()) out[d.type] = (out[d.type] ?? 0) + 1;
      return out;
    },
    /** The log's lines, oldest first. */
    logLines() {
      return [...document.querySelectorAll("#log-list li")].map((li) => li.textContent);
    },
  }),
});

requestAnimationFrame(frame);
void start();
