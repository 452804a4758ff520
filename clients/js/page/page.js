// @ts-check
// The demo page that rollcall serves at `/`: a form to join a session, its live member list (the
// leader marked, members whose connection dropped greyed out until they are back), counts and
// messages. All protocol work is the rollcall-client library's (reconnects resume the session and
// deliver the messages missed meanwhile once each, in order); this file only renders what it
// reports.
//
// Query parameters: `session` and `name` join at once; `ws` is a comma-separated list of WebSocket
// URLs to use instead of this page's own server (several instances); `token` is passed on.
import { RollcallClient, RollcallError } from "rollcall-client";

/** @typedef {import("rollcall-client").Session} Session */
/** @typedef {import("../src/view.js").Member} Member */

/**
 * @template {HTMLElement} T
 * @param {string} selector
 * @returns {T}
 */
function $(selector) {
  const el = document.querySelector(selector);
  if (!el) throw new Error(`missing ${selector}`);
  return /** @type {T} */ (el);
}

const params = new URLSearchParams(location.search);
const ownWs = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const wsUrls = (params.get("ws") ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const token = params.get("token") || undefined;

const client = new RollcallClient({ url: wsUrls.length > 0 ? wsUrls : ownWs, token });

const status = $("#status");
const stateText = $("[data-testid=state]");
const joinSection = $("#join");
const joinForm = /** @type {HTMLFormElement} */ ($("#join-form"));
const joinError = $("#join-error");
const room = $("#room");
const roomName = $("#room-name");
const counts = $("[data-testid=counts]");
const membersList = $("[data-testid=members]");
const messagesList = $("[data-testid=messages]");
const noMessages = $("#no-messages");
const messageForm = /** @type {HTMLFormElement} */ ($("#message-form"));
const messageInput = /** @type {HTMLInputElement} */ ($("input[name=message]"));
const endButton = /** @type {HTMLButtonElement} */ ($("#end"));
const leaveButton = /** @type {HTMLButtonElement} */ ($("#leave"));
const endedSection = $("#ended");
const endedText = $("#ended-text");

/** @type {Session | null} */
let session = null;
/** @type {(() => void)[]} */
let unsubscribe = [];
/** Names of everyone seen in this session, so that messages and "ended by" keep a name. */
const names = new Map();

/** @param {string} state */
function renderState(state) {
  stateText.textContent = state;
  status.dataset.state = state;
}
client.on("state", renderState);
renderState(client.state);
client.on("error", (err) => showError(err));

/** @param {unknown} err */
function showError(err) {
  const text = err instanceof RollcallError ? `${err.message} (${err.code})` : String(err);
  joinError.textContent = text;
  console.warn("rollcall:", err);
}

/** @param {string} s */
function initials(s) {
  const parts = s.trim().split(/\s+/).slice(0, 2);
  return parts.map((p) => p[0]?.toUpperCase() ?? "").join("") || "?";
}

/** A stable hue per connection, so that a person keeps a colour. @param {string} id */
function hue(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

/** @param {number} n @param {string} one @param {string} many */
function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function render() {
  if (!session || session.state !== "joined") return;
  for (const m of session.members) names.set(m.connection, m.name);
  roomName.textContent = session.id;
  const c = session.counts;
  const away = c.reconnecting > 0 ? ` · ${c.reconnecting} reconnecting` : "";
  counts.textContent = `${plural(c.connections, "connection", "connections")} · ${plural(c.users, "user", "users")}${away}`;
  const items = session.members.map((m) => memberItem(m, /** @type {Session} */ (session)));
  membersList.replaceChildren(...items);
  endButton.hidden = !session.isLeader;
}

/**
 * @param {Member} m
 * @param {Session} s
 */
function memberItem(m, s) {
  const li = document.createElement("li");
  li.dataset.connection = m.connection;
  li.dataset.state = m.state ?? "present";
  const isLeader = m.connection === s.leader;
  const isYou = m.connection === s.you;
  if (isLeader) li.dataset.leader = "true";
  if (isYou) li.dataset.you = "true";
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.style.setProperty("--hue", String(hue(m.connection)));
  avatar.textContent = initials(m.name);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = m.name;
  li.append(avatar, name);
  if (isYou) li.append(badge("you", "You"));
  if (isLeader) li.append(badge("leader", "Leader"));
  if (m.state === "reconnecting") {
    li.title = `${m.name} lost the connection and may come back`;
    li.append(badge("away", "Reconnecting…"));
  }
  return li;
}

/** @param {string} kind @param {string} text */
function badge(kind, text) {
  const b = document.createElement("span");
  b.className = `badge ${kind}`;
  b.textContent = text;
  return b;
}

/** @param {unknown} data */
function messageText(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object" && "text" in data && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

/**
 * @param {string} fromName
 * @param {string} text
 * @param {boolean} own
 * @param {number} [offset]  the message's offset in the session's stream, when the server gives one
 */
function addMessage(fromName, text, own, offset) {
  const li = document.createElement("li");
  if (own) li.className = "own";
  if (offset !== undefined) li.dataset.offset = String(offset);
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = fromName;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.append(from, body, time);
  messagesList.append(li);
  noMessages.hidden = true;
  messagesList.scrollTop = messagesList.scrollHeight;
}

/**
 * A line of the page's own between the messages (after a reconnect that may have lost some).
 * @param {string} text
 */
function addNotice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  messagesList.append(li);
  messagesList.scrollTop = messagesList.scrollHeight;
}

/** @param {"join" | "room" | "ended"} which */
function show(which) {
  joinSection.hidden = which !== "join";
  room.hidden = which !== "room";
  endedSection.hidden = which !== "ended";
}

/**
 * @param {string} id
 * @param {string} name
 */
async function join(id, name) {
  joinError.textContent = "";
  /** @type {Session} */
  let joined;
  try {
    joined = await client.join(id, { name });
  } catch (err) {
    showError(err);
    show("join");
    return;
  }
  session = joined;
  names.clear();
  messagesList.replaceChildren();
  noMessages.hidden = false;
  const query = new URLSearchParams(params);
  query.set("session", id);
  query.set("name", name);
  history.replaceState(null, "", `?${query}`);
  unsubscribe = [
    joined.on("change", render),
    // The library delivers each message once and in order, also those missed during a reconnect.
    joined.on("message", ({ from, data, offset }) =>
      addMessage(from === null ? "server" : names.get(from) || "someone", messageText(data), false, offset),
    ),
    joined.on("recovered", ({ recovered }) => {
      if (!recovered) addNotice("Reconnected. Messages sent while you were away may be missing.");
    }),
    joined.on("ended", ({ by }) => {
      const who = by === null ? "someone" : by === joined.you ? "you" : (names.get(by) ?? "the leader");
      endedText.textContent = `${joined.id} was ended by ${who}.`;
      finish();
      show("ended");
    }),
  ];
  show("room");
  render();
  messageInput.focus();
}

function finish() {
  for (const off of unsubscribe) off();
  unsubscribe = [];
  session = null;
}

joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const data = new FormData(joinForm);
  join(String(data.get("session") ?? "").trim(), String(data.get("name") ?? "").trim());
});

messageForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = messageInput.value.trim();
  if (!text || !session) return;
  const s = session;
  messageInput.value = "";
  try {
    await s.publish({ text });
    addMessage(`${names.get(s.you) ?? "You"} (you)`, text, true);
  } catch (err) {
    messageInput.value = text;
    showError(err);
  }
});

endButton.addEventListener("click", async () => {
  if (!session) return;
  try {
    await session.end();
  } catch (err) {
    showError(err);
  }
});

leaveButton.addEventListener("click", async () => {
  const s = session;
  finish();
  show("join");
  if (s) await s.leave().catch(showError);
  history.replaceState(null, "", location.pathname);
});

$("#again").addEventListener("click", () => {
  show("join");
  history.replaceState(null, "", location.pathname);
});

// Leaving the page says goodbye at once (the others see `left` now, not after a timeout). A page
// restored from the back-forward cache starts over with a fresh connection.
addEventListener("pagehide", () => client.close());
addEventListener("pageshow", (ev) => {
  if (ev.persisted) location.reload();
});

const initialSession = params.get("session");
const initialName = params.get("name");
if (initialSession) (/** @type {HTMLInputElement} */ ($("input[name=session]"))).value = initialSession;
if (initialName) (/** @type {HTMLInputElement} */ ($("input[name=name]"))).value = initialName;
if (initialSession && initialName) join(initialSession, initialName);
else show("join");
