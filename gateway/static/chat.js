// The chat page: one WebSocket (protocol gateway.chat.v1), text rendered only through textContent.
"use strict";
(() => {
  const chat = document.getElementById("chat");
  const room = chat.dataset.room;
  const myId = document.getElementById("me").dataset.userId;
  const list = document.getElementById("messages");
  const statusEl = document.getElementById("status");
  const notice = document.getElementById("notice");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const sendButton = document.getElementById("send");
  const seen = new Map();      // message id -> <li>
  const pending = new Map();   // client_id -> text, until acked
  let socket = null;
  let attempt = 0;
  let opened = false;
  let stopped = false;
  let refreshed = false;     // one POST /auth/refresh per 4401, reset once live again

  const labels = {
    connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
    provider: "provider unavailable", signedout: "signed out", stopped: "disconnected",
  };

  function setState(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = labels[state];
    const live = state === "live";
    input.disabled = !live;
    sendButton.disabled = !live;
  }

  function say(text) {
    notice.hidden = !text;
    notice.textContent = text || "";
  }

  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  function render(message) {
    if (seen.has(message.id)) return;
    const item = document.createElement("li");
    item.className = "message" + (message.user.id === myId ? " mine" : "");
    item.dataset.id = message.id;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = message.user.name;
    const when = document.createElement("time");
    when.dateTime = new Date(message.ts).toISOString();
    when.textContent = new Date(message.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = message.text;
    item.append(who, when, text);
    // Keep id order even when history and live messages interleave.
    let before = null;
    for (const [id, node] of seen) {
      if (compareIds(id, message.id) > 0 && (!before || compareIds(id, before.dataset.id) < 0)) before = node;
    }
    list.insertBefore(item, before);
    seen.set(message.id, item);
    list.scrollTop = list.scrollHeight;
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function onFrame(event) {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    switch (frame.type) {
      case "welcome":
        attempt = 0;
        refreshed = false;
        setState("live");
        say("");
        for (const [clientId, text] of pending) send({ type: "message", text, client_id: clientId });
        break;
      case "history":
        frame.messages.forEach(render);
        break;
      case "message":
        render(frame);
        break;
      case "ack":
        pending.delete(frame.client_id);
        break;
      case "error":
        say(frame.message);
        break;
    }
  }

  async function askWhy() {
    // Browsers never show a refused handshake's HTTP status: the session probe tells us why.
    try {
      const answer = await fetch("/auth/session", { credentials: "same-origin", cache: "no-store" });
      const session = await answer.json();
      if (session.provider_status === "unavailable") return "provider";
      if (!session.authenticated) return "signedout";
    } catch { /* the gateway itself is unreachable: keep retrying */ }
    return "retry";
  }

  async function tryRefresh() {
    // The token expired or was revoked: try the sealed refresh token once (until live again).
    if (refreshed) return false;
    refreshed = true;
    setState("reconnecting");
    try {
      const answer = await fetch("/auth/refresh", { method: "POST", credentials: "same-origin" });
      return answer.status === 204;
    } catch {
      return false;
    }
  }

  function signIn() {
    setState("signedout");
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  function retry(state) {
    setState(state);
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setTimeout(connect, delay);
  }

  async function onClose(event) {
    socket = null;
    if (stopped) return;
    const code = event.code;
    if (code === 4401) return (await tryRefresh()) ? connect() : signIn();
    if (code === 4403) { stopped = true; setState("stopped"); return say("You are no longer allowed in this room."); }
    if (code === 1003 || code === 1007 || code === 1009) {
      say("The server refused a message this page sent (" + code + "); reconnecting.");
    }
    if (!opened) {
      const why = await askWhy();
      if (why === "signedout") return (await tryRefresh()) ? connect() : signIn();
      return retry(why === "provider" ? "provider" : "reconnecting");
    }
    retry("reconnecting");
  }

  function connect() {
    opened = false;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${window.location.host}/ws/${encodeURIComponent(room)}`, ["gateway.chat.v1"]);
    socket.addEventListener("open", () => { opened = true; });
    socket.addEventListener("message", onFrame);
    socket.addEventListener("close", onClose);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
    pending.set(clientId, text);
    send({ type: "message", text, client_id: clientId });
    input.value = "";
    input.focus();
  });

  window.addEventListener("pagehide", () => { stopped = true; if (socket) socket.close(1000); });
  setState("connecting");
  connect();
})();
