// The chatroom demo's web page: connects back to the gate that served it (its key from
// /oxworld.json, trust on first use), lets the user sign in or create an account, then chat in
// rooms. Every text from users or the server goes into the page as text (textContent), never
// as HTML.

import { CLIENT_PROTOCOL_VERSION, ErrorCode, connect } from "./oxworld-client.js";

/** Names and rooms, as the game checks them. */
const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_CHAT_BYTES = 512;
const ROOMS_REFRESH_MS = 5000;
const MAX_LOG_LINES = 500;
/** Consecutive lines of one author within this long share one header. */
const GROUP_MS = 5 * 60_000;

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  state: $("connection-state"),
  stateText: document.querySelector('[data-testid="connection-state"] .status-text'),
  me: $("me"),
  meAvatar: $("me-avatar"),
  meName: $("me-name"),
  signOut: $("sign-out"),
  banner: $("disconnected-banner"),
  closeReason: $("close-reason"),
  reconnect: $("reconnect"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  username: $("username"),
  password: $("password"),
  loginMessage: $("login-message"),
  loginButton: $("login-button"),
  registerButton: $("register-button"),
  chatView: $("chat-view"),
  roomList: $("room-list"),
  refreshRooms: $("refresh-rooms"),
  joinForm: $("join-form"),
  joinRoom: $("join-room"),
  joinButton: $("join-button"),
  currentRoom: $("current-room"),
  roomMembers: $("room-members"),
  log: $("message-log"),
  composer: $("composer"),
  input: $("message-input"),
  sendButton: $("send-button"),
};

/** The live client, or null while connecting or after it closed. */
let client = null;
/** The signed-in user's name. */
let me = "";
let room = "";
/** The register or login under way: { action, user, password }. */
let pending = null;
let roomsTimer;
let roomsSoon;
/** Print the next room list in the log (after `/rooms`). */
let announceRooms = false;
/** [[room, members], ...] as last received. */
let rooms = [];

// ----- small helpers -----

function make(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function sentence(s) {
  const t = String(s ?? "").trim();
  return t ? t[0].toUpperCase() + t.slice(1) : t;
}

/** A hue (0-359) for a name, so each person keeps one colour. */
function hueOf(name) {
  let h = 0x811c9dc5;
  for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193) >>> 0;
  return h % 360;
}

function avatarFor(name, className = "avatar") {
  const a = make("span", className, (name[0] ?? "?").toUpperCase());
  a.style.setProperty("--hue", String(hueOf(name)));
  a.setAttribute("aria-hidden", "true");
  return a;
}

function clock(d = new Date()) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** A server error in words a user understands (the server's text names methods and types). */
function plainError(err) {
  switch (err.code) {
    case ErrorCode.UnknownMethod:
    case ErrorCode.NotExposed:
    case ErrorCode.NotAddressable:
      return "The server cannot do that now.";
    case ErrorCode.Unavailable:
      return `The server is not available: ${err.reason}`;
    case ErrorCode.UnknownEntity:
      return "Your session on the server is gone; reconnect.";
    case ErrorCode.RateLimited:
      return "You are sending too fast; slow down a little.";
    default:
      return sentence(String(err.reason).split(": ").pop());
  }
}

// ----- connection state -----

function setStatus(state, text) {
  ui.state.dataset.state = state;
  document.body.dataset.connection = state;
  ui.stateText.textContent = text;
}

function setBusy(busy) {
  const ready = !busy && client?.player?.typeName === "Account";
  ui.loginButton.disabled = !ready;
  ui.registerButton.disabled = !ready;
}

function closed(reason) {
  client = null;
  pending = null;
  clearInterval(roomsTimer);
  setStatus("closed", "Disconnected");
  ui.closeReason.textContent = sentence(reason) || "The connection was lost.";
  ui.banner.hidden = false;
  ui.input.disabled = true;
  ui.sendButton.disabled = true;
  ui.joinRoom.disabled = true;
  ui.joinButton.disabled = true;
  ui.refreshRooms.disabled = true;
  ui.roomMembers.textContent = "";
  setBusy(true);
  if (!ui.chatView.hidden) addNotice("error", `Disconnected: ${reason || "the connection was lost"}`);
  else formMessage("error", "Not connected to the server.");
}

/** Why connecting failed, in words. */
function failure(e) {
  if (e?.name === "HandshakeError" && e.status === 4) return "the server's key has changed; reload the page";
  if (e?.name === "HandshakeError" && e.status === 2) return "this page is out of date; reload it";
  return e?.reason || e?.message || String(e);
}

async function start() {
  setStatus("connecting", "Connecting…");
  ui.banner.hidden = true;
  showLogin();
  setBusy(true);
  let info;
  try {
    const r = await fetch("/oxworld.json", { cache: "no-store" });
    if (!r.ok) throw new Error(`it answered ${r.status}`);
    info = await r.json();
  } catch (e) {
    closed(`cannot reach the server (${e.message})`);
    return;
  }
  if (info.protocol !== undefined && info.protocol !== CLIENT_PROTOCOL_VERSION) {
    closed(`the server speaks protocol ${info.protocol}, this page ${CLIENT_PROTOCOL_VERSION}: reload the page`);
    return;
  }
  const opts = info.encrypt === false ? { encrypt: false } : { serverKey: info.server_key };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let c;
  try {
    c = await connect(`${scheme}://${location.host}/`, opts);
  } catch (e) {
    closed(failure(e));
    return;
  }
  client = c;
  wire(c);
  setStatus("open", "Connected");
}

/** The server's calls and the client's events, for client `c` (ignored once it is replaced). */
function wire(c) {
  const live = (fn) => (ev) => {
    if (client === c) fn(ev);
  };
  c.on(
    "player",
    live((p) => {
      if (p.typeName === "Avatar") enterChat(p);
      else {
        showLogin();
        setBusy(pending !== null);
      }
    }),
  );
  c.onCall(
    "show_info",
    live(({ entity, args }) => {
      const text = String(args[0] ?? "");
      if (onAccountScreen(entity)) accountInfo(text);
      else addNotice("info", sentence(text));
    }),
  );
  c.onCall(
    "show_error",
    live(({ entity, args }) => {
      const text = sentence(args[0]);
      if (onAccountScreen(entity)) {
        pending = null;
        setBusy(false);
        formMessage("error", text);
      } else addNotice("error", text);
    }),
  );
  c.onCall("on_recv_chat", live(({ args }) => addChat(String(args[0] ?? ""), String(args[1] ?? ""))));
  c.onCall(
    "on_arrive",
    live(({ args }) => {
      const [name, where] = [String(args[0] ?? ""), String(args[1] ?? "")];
      if (name !== me) addEvent("arrive", name, where);
      refreshRoomsSoon();
    }),
  );
  c.onCall(
    "on_leave",
    live(({ args }) => {
      const [name, where] = [String(args[0] ?? ""), String(args[1] ?? "")];
      if (name !== me) addEvent("leave", name, where);
      refreshRoomsSoon();
    }),
  );
  c.onCall("on_rooms", live(({ args }) => showRooms(Array.isArray(args[0]) ? args[0] : [])));
  c.on(
    "error",
    live((err) => {
      if (err.isFarewell) return; // the close that follows says it
      if (ui.chatView.hidden) {
        pending = null;
        setBusy(false);
        formMessage("error", plainError(err));
      } else addNotice("error", plainError(err));
    }),
  );
  c.on(
    "close",
    live(({ reason, byClient }) => {
      if (!byClient) closed(reason);
    }),
  );
}

function onAccountScreen(entity) {
  return entity ? entity.typeName === "Account" : ui.chatView.hidden;
}

// ----- signing in -----

function showLogin() {
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  ui.me.hidden = true;
  ui.signOut.hidden = true;
  document.title = "oxworld chat";
  if (!ui.username.value) ui.username.focus();
  else ui.password.focus();
}

function formMessage(kind, text) {
  ui.loginMessage.dataset.kind = kind;
  ui.loginMessage.textContent = text;
}

function submitAccount(action) {
  const user = ui.username.value.trim();
  const password = ui.password.value;
  if (!NAME_RE.test(user)) {
    formMessage("error", "User names are 1 to 32 letters, digits, _ or -.");
    ui.username.focus();
    return;
  }
  if (!password) {
    formMessage("error", "Type a password.");
    ui.password.focus();
    return;
  }
  const account = client?.player;
  if (!account || account.typeName !== "Account") {
    formMessage("error", "Still connecting; try again in a moment.");
    return;
  }
  pending = { action, user, password };
  setBusy(true);
  formMessage("progress", action === "register" ? "Creating your account…" : "Signing in…");
  try {
    account.call(action, user, password);
  } catch (e) {
    pending = null;
    setBusy(false);
    formMessage("error", failure(e));
  }
}

/** `show_info` before sign-in: a new account signs in at once. */
function accountInfo(text) {
  if (pending?.action === "register") {
    pending.action = "login";
    formMessage("progress", "Account created. Signing in…");
    try {
      client.player.call("login", pending.user, pending.password);
    } catch (e) {
      pending = null;
      setBusy(false);
      formMessage("error", failure(e));
    }
    return;
  }
  formMessage("info", sentence(text));
}

ui.loginForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitAccount("login");
});
ui.registerButton.addEventListener("click", () => submitAccount("register"));

// ----- chatting -----

function enterChat(avatar) {
  me = String(avatar.attr("name") ?? pending?.user ?? "");
  pending = null;
  ui.password.value = "";
  formMessage("", "");
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.me.hidden = false;
  ui.signOut.hidden = false;
  ui.meName.textContent = me;
  ui.meAvatar.textContent = (me[0] ?? "?").toUpperCase();
  ui.meAvatar.style.setProperty("--hue", String(hueOf(me)));
  ui.input.disabled = false;
  ui.sendButton.disabled = false;
  ui.joinRoom.disabled = false;
  ui.joinButton.disabled = false;
  ui.refreshRooms.disabled = false;
  setRoom(String(avatar.attr("chatroom") ?? ""));
  avatar.onAttr("chatroom", (v) => setRoom(String(v ?? "")));
  avatar.onAttr("name", (v) => {
    me = String(v ?? me);
    ui.meName.textContent = me;
  });
  clearInterval(roomsTimer);
  roomsTimer = setInterval(refreshRooms, ROOMS_REFRESH_MS);
  refreshRooms();
  ui.input.focus();
}

function setRoom(r) {
  if (!r || r === room) return;
  room = r;
  ui.currentRoom.textContent = r;
  document.title = `#${r} · oxworld chat`;
  addDivider(`#${r}`);
  showRooms(rooms);
  refreshRooms();
}

function avatarEntity() {
  const p = client?.player;
  return p?.typeName === "Avatar" ? p : undefined;
}

/** Calls `method` on the avatar; false (with a note in the log) when that is not possible. */
function callAvatar(method, ...args) {
  const a = avatarEntity();
  if (!a) {
    addNotice("error", "Not connected to the server.");
    return false;
  }
  try {
    a.call(method, ...args);
    return true;
  } catch (e) {
    addNotice("error", sentence(failure(e)));
    return false;
  }
}

function refreshRooms() {
  const a = avatarEntity();
  if (!a || !client?.isOpen) return;
  try {
    a.call("rooms");
  } catch {
    // Closing: the close handler tells the user.
  }
}

function refreshRoomsSoon() {
  clearTimeout(roomsSoon);
  roomsSoon = setTimeout(refreshRooms, 300);
}

function joinRoom(name) {
  const r = name.trim().replace(/^#/, "");
  if (!NAME_RE.test(r)) {
    addNotice("error", "Room names are 1 to 32 letters, digits, _ or -.");
    return false;
  }
  if (r === room) {
    addNotice("info", `You are already in #${r}.`);
    return true;
  }
  return callAvatar("join_room", r);
}

function showRooms(list) {
  rooms = list
    .filter((x) => Array.isArray(x) && typeof x[0] === "string")
    .map(([r, n]) => [r, Number(n) || 0]);
  const shown = [...rooms].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (room && !shown.some(([r]) => r === room)) shown.unshift([room, undefined]);
  const items = shown.map(([r, n]) => {
    const li = make("li");
    li.dataset.testid = "room";
    li.dataset.room = r;
    li.dataset.count = n === undefined ? "" : String(n);
    const b = make("button", "room");
    b.type = "button";
    b.append(make("span", "room-hash", "#"), make("span", "room-name", r));
    if (n !== undefined) {
      const badge = make("span", "room-count", String(n));
      badge.title = `${n} ${n === 1 ? "person" : "people"} here`;
      b.append(badge);
    }
    if (r === room) {
      li.classList.add("current");
      b.setAttribute("aria-current", "true");
    }
    b.addEventListener("click", () => joinRoom(r));
    li.append(b);
    return li;
  });
  ui.roomList.replaceChildren(...items);
  const here = rooms.find(([r]) => r === room);
  ui.roomMembers.textContent = here ? `${here[1]} ${here[1] === 1 ? "person" : "people"} here` : "";
  if (announceRooms) {
    announceRooms = false;
    const text = rooms.length ? rooms.map(([r, n]) => `#${r} (${n})`).join(", ") : "none";
    addNotice("info", `Rooms: ${text}`);
  }
}

const HELP = [
  "Type a message and press Enter to send it to everyone in the room.",
  "/join <room>: go to another room (letters, digits, _ and -). Click a room on the left to go there too.",
  "/rooms: list the rooms and how many people are in each.",
];

/** A line typed in the message box: a command, or chat. */
function typed(line) {
  const text = line.trim();
  if (!text) return true;
  if (text.startsWith("/")) {
    const [cmd, ...rest] = text.split(/\s+/);
    switch (cmd.toLowerCase()) {
      case "/join":
        if (rest.length !== 1) {
          addNotice("error", "Usage: /join <room>");
          return false;
        }
        return joinRoom(rest[0]);
      case "/rooms":
        announceRooms = true;
        refreshRooms();
        return true;
      case "/help":
        for (const h of HELP) addNotice("info", h);
        return true;
      default:
        addNotice("error", `Unknown command ${cmd}; /help lists the commands.`);
        return false;
    }
  }
  if (new TextEncoder().encode(text).length > MAX_CHAT_BYTES) {
    addNotice("error", `A message can be at most ${MAX_CHAT_BYTES} bytes long.`);
    return false;
  }
  return callAvatar("send_chat", text);
}

ui.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (typed(ui.input.value)) ui.input.value = "";
  ui.input.focus();
});

ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (joinRoom(ui.joinRoom.value)) ui.joinRoom.value = "";
});

ui.refreshRooms.addEventListener("click", refreshRooms);

ui.signOut.addEventListener("click", async () => {
  const c = client;
  client = null;
  clearInterval(roomsTimer);
  me = "";
  room = "";
  rooms = [];
  ui.log.replaceChildren();
  ui.roomList.replaceChildren();
  if (c) await c.close();
  formMessage("", "");
  void start();
});

ui.reconnect.addEventListener("click", () => {
  room = "";
  void start();
});

// ----- the message log -----

/** Appends `li` to the log, keeping the view at the bottom if it was there. */
function append(li) {
  const log = ui.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  log.append(li);
  while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function addChat(name, text) {
  const now = new Date();
  const last = ui.log.lastElementChild;
  const grouped =
    last?.dataset.testid === "chat-line" && last.dataset.name === name && now - Number(last.dataset.time) < GROUP_MS;
  const li = make("li", "msg msg-chat");
  li.dataset.testid = "chat-line";
  li.dataset.name = name;
  li.dataset.time = String(now.getTime());
  if (name === me) li.classList.add("mine");
  if (grouped) li.classList.add("grouped");
  const body = make("div", "msg-body");
  const head = make("div", "msg-head");
  const author = make("span", "author", name);
  author.style.setProperty("--hue", String(hueOf(name)));
  head.append(author, make("time", "time", clock(now)));
  body.append(head, make("div", "text", text));
  li.append(avatarFor(name), body);
  append(li);
}

/** `name` arrived in or left `where`. */
function addEvent(kind, name, where) {
  const li = make("li", `msg msg-event msg-${kind}`);
  li.dataset.testid = "event-line";
  li.dataset.kind = kind;
  li.dataset.name = name;
  li.dataset.room = where;
  const what = kind === "arrive" ? ` joined #${where}` : ` left #${where}`;
  li.append(make("span", "event-icon", kind === "arrive" ? "→" : "←"), make("strong", "", name), what);
  li.append(make("time", "time", clock()));
  append(li);
}

function addNotice(kind, text) {
  const li = make("li", `msg msg-notice msg-${kind}`);
  li.dataset.testid = "notice-line";
  li.dataset.kind = kind;
  li.append(make("span", "notice-icon", kind === "error" ? "!" : "i"), make("span", "notice-text", text));
  append(li);
}

function addDivider(text) {
  const li = make("li", "msg msg-divider");
  li.dataset.testid = "divider";
  li.append(make("span", "", text));
  append(li);
}

void start();
