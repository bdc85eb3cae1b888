// The chat page: one WebSocket (protocol gateway.chat.v1, docs/protocol.md). Text only via textContent:
// messages' `code`, *emphasis* and links come from richtext.js as tokens, built here as nodes.
// Names that look like another user's get that user's provider and short id next to them (names.js).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const room = $("chat").dataset.room;
  const myId = $("me").dataset.userId;
  const myNameEl = $("me").querySelector("strong");
  const myName = myNameEl.textContent;
  const list = $("messages");
  const statusEl = $("status");
  const notice = $("notice");
  const input = $("text");
  const sendButton = $("send");

  const seen = new Map();      // message id -> <li>, kept in id order
  // The outbox: client_id -> {text, item, failed}, in the order typed; shown as "sending…" until acked.
  // One message is in flight at a time (sent, not yet acked or refused): a refused one is sent again
  // before any later one, so the room gets them in the order typed, each stored once (same client_id).
  const pending = new Map();
  const outboxKey = "gateway.outbox." + room;  // survives a reload of this tab (sessionStorage)
  let inFlight = null;         // the client_id sent and waiting for its ack or refusal
  let holdUntil = 0;           // no sending before this (ms): the server's retry_after
  let holdTimer = null;
  const people = new Map();    // user id -> name: who is here now
  const shown = new Map([[myId, new Set([myName])]]);  // user id -> every name it showed in this room
  let qualified = new Map();   // user id -> "provider:short id", for names that look like another's
  let namesChanged = false;
  let socket = null;
  let lastId = null;           // newest message id we hold: the resume point
  let attempt = 0;
  let opened = false;
  let stopped = false;
  let refreshed = false;       // one POST /auth/refresh per lost session, reset once live again
  let renewal = null;          // the timer of the next refresh ahead of the token's expiry

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

  function say(text, kind) {
    notice.hidden = !text;
    notice.textContent = text || "";
    notice.dataset.kind = text ? kind || "" : "";
  }

  // Ids are "<ms>-<seq>": compare as the integer pair, never as strings.
  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  // A name as text, and when it looks like another user's, the provider and short id after it.
  function paintName(element, id, name) {
    element.replaceChildren(document.createTextNode(name));
    const label = qualified.get(id);
    if (!label) return;
    const tag = document.createElement("span");
    tag.className = "uid";
    tag.textContent = label;
    tag.title = id;
    element.append(" ", tag);
  }

  function note(user) {
    if (!shown.has(user.id)) shown.set(user.id, new Set());
    if (shown.get(user.id).has(user.name)) return;
    shown.get(user.id).add(user.name);
    namesChanged = true;
  }

  // After a frame: if it showed a new name, look for look-alikes again and repaint every name on the page.
  function settleNames() {
    if (!namesChanged) return;
    namesChanged = false;
    const pairs = [...shown].flatMap(([id, names]) => [...names].map((name) => [id, name]));
    qualified = window.GatewayNames.qualifiers(pairs);
    for (const who of list.querySelectorAll(".who[data-user-id]")) paintName(who, who.dataset.userId, who.dataset.name);
    paintName(myNameEl, myId, myName);
    renderPeople();
  }

  function messageItem(user, text, ts, mine) {
    const item = document.createElement("li");
    item.className = "message" + (mine ? " mine" : "");
    item.dataset.day = dayKey(new Date(ts));
    const who = document.createElement("span");
    who.className = "who";
    who.dataset.userId = user.id;
    who.dataset.name = user.name;
    paintName(who, user.id, user.name);
    const when = document.createElement("time");
    const date = new Date(ts);
    when.dateTime = date.toISOString();
    when.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    when.title = date.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
    const body = document.createElement("p");
    body.className = "text";
    body.append(...richText(text));
    item.append(who, when, body);
    return item;
  }

  function richText(text) {
    return window.GatewayText.tokens(text, myName).map((token) => {
      if (token.kind === "text") return document.createTextNode(token.text);
      const node = document.createElement({ link: "a", mention: "mark" }[token.kind] || token.kind);
      if (token.kind === "mention") node.className = "mention";
      node.textContent = token.text;
      if (token.kind === "link") {
        node.href = token.href;             // http(s) only: richtext.js checked the scheme
        node.target = "_blank";
        node.rel = "noopener noreferrer";
      }
      return node;
    });
  }

  function dayKey(date) {
    return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(date) === dayKey(today)) return "Today";
    if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
    return date.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  }

  // A separator before the first message of each day (local time), redrawn after every change of the list.
  function markDays() {
    for (const old of list.querySelectorAll("li.day")) old.remove();
    let last = null;
    for (const item of list.querySelectorAll("li.message")) {
      if (item.dataset.day === last) continue;
      last = item.dataset.day;
      const separator = document.createElement("li");
      separator.className = "day";
      separator.setAttribute("role", "separator");
      const label = document.createElement("span");
      label.textContent = dayLabel(new Date(item.querySelector("time").dateTime));
      separator.append(label);
      list.insertBefore(separator, item);
    }
  }

  const edits = window.GatewayEdits.create({
    send, richText, say, windowMs: Number($("chat").dataset.editWindow || 0) * 1000,
  });

  function showEmpty() {
    $("empty").hidden = list.querySelector("li.message") !== null;
  }

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function render(message, older) {
    if (seen.has(message.id)) return;          // merge by id: history, resume and live overlap
    const follow = !older && atBottom();
    const mine = message.user.id === myId;
    note(message.user);
    const item = messageItem(message.user, message.text, message.ts, mine);
    item.dataset.id = message.id;
    if (!mine && item.querySelector("mark.mention")) item.classList.add("mentions-me");
    edits.render(item, message, mine);
    if (mine && message.client_id && pending.has(message.client_id)) {
      pending.get(message.client_id).item.remove();
      pending.delete(message.client_id);
      saveOutbox();
    }
    let before = null;                         // first held message newer than this one
    for (const [id, node] of seen) {
      if (compareIds(id, message.id) > 0 && (!before || compareIds(id, before.dataset.id) < 0)) before = node;
    }
    list.insertBefore(item, before || firstPending());
    seen.set(message.id, item);
    if (!lastId || compareIds(message.id, lastId) > 0) lastId = message.id;
    if (follow || (mine && !older)) list.scrollTop = list.scrollHeight;
    $("empty").hidden = true;
  }

  function firstPending() {
    const first = pending.values().next();
    return first.done ? null : first.value.item;
  }

  function renderPeople() {
    const box = $("people");
    box.replaceChildren(...[...people].sort((a, b) => a[1].localeCompare(b[1])).map(([id, name]) => {
      const item = document.createElement("li");
      paintName(item, id, name);
      if (id === myId) item.append(" (you)");
      return item;
    }));
    $("people-count").textContent = `(${people.size})`;
  }

  function send(frame) {
    if (!isOpen()) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN && statusEl.dataset.state === "live";
  }

  function saveOutbox() {
    const entries = [...pending].map(([clientId, entry]) => ({ clientId, text: entry.text, failed: entry.failed || null }));
    try {
      if (entries.length) sessionStorage.setItem(outboxKey, JSON.stringify(entries));
      else sessionStorage.removeItem(outboxKey);
    } catch { /* private mode, or full: the page still holds them */ }
  }

  // Send the oldest message that waits, when nothing is in flight and the rate limit allows.
  function pump() {
    if (inFlight || !isOpen()) return;
    const wait = holdUntil - Date.now();
    if (wait > 0) {
      if (!holdTimer) holdTimer = setTimeout(() => { holdTimer = null; pump(); }, wait);
      return;
    }
    for (const [clientId, entry] of pending) {
      if (entry.failed) continue;
      if (send({ type: "message", text: entry.text, client_id: clientId })) inFlight = clientId;
      return;
    }
  }

  function waiting() {
    return [...pending.values()].filter((entry) => !entry.failed).length;
  }

  function showBacklog() {
    if (notice.dataset.kind !== "rate") return;
    const count = waiting();
    if (count) say(`Sending slowly (the chat's rate limit): ${count} message${count === 1 ? "" : "s"} waiting.`, "rate");
    else say("");
  }

  function settled(clientId) {
    if (inFlight === clientId) inFlight = null;
  }

  // Refused for good (too big, not allowed, history full): shown as failed, with "Retry" and "Delete".
  function markFailed(clientId, why) {
    const entry = pending.get(clientId);
    if (!entry) return;
    entry.failed = why;
    entry.item.classList.remove("pending");
    entry.item.classList.add("failed");
    const bar = document.createElement("div");
    bar.className = "failure";
    const reason = document.createElement("span");
    reason.textContent = "Not sent: " + why;
    const again = document.createElement("button");
    again.type = "button";
    again.textContent = "Retry";
    again.addEventListener("click", () => retrySend(clientId));
    const drop = document.createElement("button");
    drop.type = "button";
    drop.textContent = "Delete";
    drop.addEventListener("click", () => {
      entry.item.remove(); pending.delete(clientId); saveOutbox(); showEmpty(); input.focus();
    });
    bar.append(reason, " ", again, " ", drop);
    entry.item.append(bar);
    saveOutbox();
  }

  function retrySend(clientId) {
    const entry = pending.get(clientId);
    if (!entry) return;
    entry.failed = null;
    entry.item.classList.remove("failed");
    entry.item.classList.add("pending");
    entry.item.querySelector(".failure")?.remove();
    pending.delete(clientId);              // to the end of the queue: it goes out after what waits now
    pending.set(clientId, entry);
    list.append(entry.item);
    saveOutbox();
    pump();
  }

  // An error frame about one of our messages (it names the client_id).
  function refused(frame) {
    const clientId = frame.client_id;
    if (!pending.has(clientId)) return settled(clientId);
    settled(clientId);
    if (frame.code === "rate_limited" || frame.code === "store_unavailable") {
      // Not stored: send it again, first, once the server allows (same client_id: stored once).
      const delay = frame.code === "rate_limited" ? Number(frame.retry_after) || 1000 : 2000;
      holdUntil = Math.max(holdUntil, Date.now() + Math.min(delay, 60000) + 20);
      if (frame.code === "rate_limited") { notice.dataset.kind = "rate"; showBacklog(); } else say(frame.message);
    } else {
      markFailed(clientId, frame.message);
    }
    pump();
  }

  function queueMessage(text, clientId, failed) {
    const item = messageItem({ id: myId, name: myName }, text, Date.now(), true);
    item.classList.add("pending");
    item.dataset.clientId = clientId;
    list.append(item);
    pending.set(clientId, { text, item, failed: null });
    $("empty").hidden = true;
    markDays();
    if (failed) markFailed(clientId, failed);
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
        // The composer takes the keyboard once usable, unless the person is busy elsewhere on the page.
        if (document.activeElement === document.body || document.activeElement === null) input.focus();
        // The history that follows starts after lastId (?after= on connect): nothing missed while away.
        // Then whatever we sent that was never acked (same client_id: the server stores it once).
        inFlight = null;
        pump();
        session().then((why) => { if (why && why.expires_at) renewBefore(why.expires_at); });
        loadRooms();
        break;
      case "session":
        // A refresh of this sign-in (from this page or another tab): the socket took the new token.
        renewBefore(frame.expires_at);
        break;
      case "history":
        if (typeof frame.before === "string") { olderPage(frame); break; }
        frame.messages.forEach((message) => render(message, false));
        markRead();
        if (frame.truncated && oldestId === null) $("older").hidden = false;
        if (oldestId === null && frame.messages.length) oldestId = frame.messages[0].id;
        showEmpty();
        break;
      case "presence":
        people.clear();
        frame.users.forEach((u) => { people.set(u.id, u.name); note(u); });
        renderPeople();
        break;
      case "presence_changes":  // asked for with ?presence=changes: apply to the list we have
        frame.joined.forEach((u) => { people.set(u.id, u.name); note(u); });
        frame.left.forEach((u) => { people.delete(u.id); });
        renderPeople();
        break;
      case "join":
        people.set(frame.user.id, frame.user.name);
        note(frame.user);
        renderPeople();
        break;
      case "leave":
        people.delete(frame.user.id);
        renderPeople();
        break;
      case "message":
        if (!seen.has(frame.id)) arrived(frame);
        render(frame, false);
        break;
      case "typing":
        if (frame.user.id !== myId) startedTyping(frame.user);
        break;
      case "edit":
      case "delete":
        edits.apply(seen.get(frame.id), frame);
        break;
      case "ack": {
        // Stored. Its message frame came first (or comes with the resume after a reconnect).
        const entry = pending.get(frame.client_id);
        if (entry) { entry.item.remove(); pending.delete(frame.client_id); saveOutbox(); }
        settled(frame.client_id);
        showBacklog();
        pump();
        break;
      }
      case "error":
        if (typeof frame.client_id === "string") { refused(frame); break; }
        if (loadingOlder) { loadingOlder = false; $("older-status").textContent = ""; }
        if (frame.code === "provider_unavailable") setState("provider");
        say(frame.message);
        break;
    }
    settleNames();
    markDays();
  }

  // Older messages, a page at a time (`history {before}`): on the button, or on scrolling to the top.
  let oldestId = null;         // the oldest message id shown: where the next older page ends
  let loadingOlder = false;
  function loadOlder() {
    if (loadingOlder || oldestId === null || $("older").hidden) return;
    if (send({ type: "history", before: oldestId })) {
      loadingOlder = true;
      $("older-status").textContent = "Loading…";
    }
  }

  function olderPage(frame) {
    loadingOlder = false;
    $("older-status").textContent = "";
    const fromBottom = list.scrollHeight - list.scrollTop;   // keep what the reader looks at in place
    frame.messages.forEach((message) => render(message, true));
    if (frame.messages.length) oldestId = frame.messages[0].id;
    markDays();
    list.scrollTop = list.scrollHeight - fromBottom;
    if (!frame.truncated) $("older").hidden = true;
    else if (!frame.messages.length) {
      $("load-older").hidden = true;
      $("older-status").textContent = "Older messages are no longer kept.";
    }
  }
  $("load-older").addEventListener("click", loadOlder);
  list.addEventListener("scroll", () => { if (list.scrollTop < 40) loadOlder(); }, { passive: true });

  async function session() {
    try {
      const answer = await fetch("/auth/session?room=" + encodeURIComponent(room), { credentials: "same-origin", cache: "no-store" });
      return await answer.json();
    } catch {
      return null;                              // the gateway itself is unreachable: keep retrying
    }
  }

  async function tryRefresh() {
    if (refreshed) return false;
    refreshed = true;
    setState("reconnecting");
    try {
      // The header proves the request comes from this page: no other origin or form can send it.
      const answer = await fetch("/auth/refresh", { method: "POST", credentials: "same-origin",
                                                    headers: { "X-Gateway-Refresh": "1" } });
      return answer.status === 204;
    } catch {
      return false;
    }
  }

  // Refresh ahead of the token's expiry, so the socket takes the new token and stays open (a `session` frame
  // follows, with the next expiry). A refresh that fails changes nothing: the 4401 at expiry handles it.
  function renewBefore(expiresAt) {
    clearTimeout(renewal);
    const left = expiresAt * 1000 - Date.now();
    const delay = left > 90000 ? left - 30000 : Math.max(1000, left * 0.6);
    renewal = setTimeout(async () => {
      if (stopped || !socket) return;
      try {
        await fetch("/auth/refresh", { method: "POST", credentials: "same-origin",
                                       headers: { "X-Gateway-Refresh": "1" } });
      } catch { /* unreachable: the close at expiry retries */ }
    }, delay);
  }

  function signIn() {
    stopped = true;
    setState("signedout");
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  function retry(state) {
    setState(state);
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);  // backoff + jitter
    attempt += 1;
    setTimeout(connect, delay);
  }

  async function onClose(event) {
    socket = null;
    inFlight = null;                            // not acked: sent again after the next welcome
    loadingOlder = false;
    if (stopped) return;
    const code = event.code;
    if (code === 4401) return (await tryRefresh()) ? connect() : signIn();
    if (code === 4403) {
      stopped = true;
      setState("stopped");
      for (const [clientId, entry] of pending) if (!entry.failed) markFailed(clientId, "you are no longer allowed in this room");
      const why = await session();
      return say((why && why.reason_text) || "You are no longer allowed in this room.");
    }
    if (code === 1000) {
      // Closed on purpose (idle): come back when the person does something.
      setState("stopped");
      say("Disconnected after a quiet spell. Press a key or click to reconnect.");
      const again = () => {
        ["keydown", "pointerdown", "focus"].forEach((e) => window.removeEventListener(e, again));
        if (!socket && !stopped) { say(""); setState("connecting"); connect(); }
      };
      ["keydown", "pointerdown", "focus"].forEach((e) => window.addEventListener(e, again));
      return;
    }
    if (code === 4429) { say("Too many messages: waiting a moment before reconnecting."); attempt = Math.max(attempt, 5); }
    if (code === 1003 || code === 1007 || code === 1009) say(`The server refused a message from this page (${code}).`);
    if (!opened) {
      // Browsers never show why a handshake was refused: ask.
      const why = await session();
      if (why && why.provider_status === "unavailable") return retry("provider");
      if (why && why.authenticated === false) return (await tryRefresh()) ? connect() : signIn();
      if (why && why.allowed === false) { stopped = true; setState("stopped"); return say(why.reason_text || "Not allowed here."); }
    }
    retry("reconnecting");                      // 1001/1012 (restart), 1006, 1011, 4408: come back and resume
  }

  function connect() {
    opened = false;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const resume = lastId ? `&after=${encodeURIComponent(lastId)}` : "";
    socket = new WebSocket(`${scheme}//${window.location.host}/ws/${encodeURIComponent(room)}?presence=changes${resume}`,
                           ["gateway.chat.v1"]);
    socket.addEventListener("open", () => { opened = true; });
    socket.addEventListener("message", onFrame);
    socket.addEventListener("close", onClose);
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const clientId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`.slice(0, 64);
    queueMessage(text, clientId, null);
    list.scrollTop = list.scrollHeight;
    saveOutbox();
    pump();
    typingSent = 0;                             // sent: the next keystroke starts a new "typing"
    input.value = "";
    input.focus();
  });

  // Rooms: the server's list of rooms with recent messages this user may enter (GET /rooms), each with its
  // unread count (after the last id this user read there, kept by the server: `read` frames) and a mark when
  // an unread message mentions them; plus the rooms visited in this browser and a form to join or create any.
  let roomList = [];
  let unseenHere = 0;          // messages from others that came while this tab was hidden
  let readTimer = null;
  function visited() {
    let known = [];
    try { known = JSON.parse(localStorage.getItem("gateway.rooms") || "[]"); } catch { known = []; }
    known = [room, ...known.filter((r) => r !== room && /^[A-Za-z0-9_-]{1,64}$/.test(r))].slice(0, 12);
    try { localStorage.setItem("gateway.rooms", JSON.stringify(known)); } catch { /* private mode */ }
    return known;
  }
  const visitedRooms = visited();

  async function loadRooms() {
    try {
      const answer = await fetch("/rooms", { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) roomList = (await answer.json()).rooms;
    } catch { /* the gateway is unreachable: keep the last list */ }
    drawRooms();
  }

  function drawRooms() {
    const listed = new Map(roomList.map((entry) => [entry.name, entry]));
    const names = [...listed.keys()];
    for (const name of [...visitedRooms, "lobby"]) if (!listed.has(name)) names.push(name);
    $("rooms").replaceChildren(...names.map((name) => {
      const entry = listed.get(name);
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/chat/" + encodeURIComponent(name);
      link.append("#" + name);
      if (name === room) link.setAttribute("aria-current", "page");
      else if (entry && entry.unread) {
        const badge = document.createElement("span");
        badge.className = "unread" + (entry.mention ? " mention" : "");
        badge.textContent = (entry.mention ? "@ " : "") + (entry.unread >= 100 ? "99+" : String(entry.unread));
        badge.setAttribute("aria-label", `${entry.unread} unread${entry.mention ? ", mentions you" : ""}`);
        link.append(" ", badge);
      }
      item.append(link);
      return item;
    }));
    const total = roomList.reduce((sum, entry) => sum + (entry.name === room ? 0 : entry.unread), 0) + unseenHere;
    document.title = `${total ? `(${total}) ` : ""}#${room} — gateway`;
    // On a phone the list is in the drawer: its button carries the count.
    $("drawer-toggle").dataset.unread = total ? (total >= 100 ? "99+" : String(total)) : "";
    $("drawer-toggle").setAttribute("aria-label", total ? `Rooms and people, ${total} unread` : "Rooms and people");
  }

  // This room is read up to lastId while the tab is visible; told to the server at most once a second.
  function markRead() {
    if (document.hidden || readTimer || !lastId) return;
    readTimer = setTimeout(() => { readTimer = null; if (lastId && !document.hidden) send({ type: "read", id: lastId }); }, 1000);
  }

  function arrived(message) {
    if (message.user.id === myId) return;
    stoppedTyping(message.user.id);
    if (window.GatewayText.tokens(message.text, myName).some((token) => token.kind === "mention")) {
      notify(`${message.user.name} mentioned you in #${room}`, message.text);
    }
    if (document.hidden) { unseenHere += 1; drawRooms(); } else markRead();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    unseenHere = 0;
    markRead();
    loadRooms();
  });
  setInterval(() => { if (!document.hidden) loadRooms(); }, 15000);
  $("room-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("room-name").value.trim();
    if (/^[A-Za-z0-9_-]{1,64}$/.test(name)) window.location.assign("/chat/" + encodeURIComponent(name));
  });

  // Logging out closes this socket (4401) before the answer arrives: no refresh, no sign-in redirect then,
  // which would race the logout's own navigation (and the refresh is refused: the sign-in has ended).
  const logoutForm = document.querySelector('form[action="/logout"]');
  if (logoutForm) logoutForm.addEventListener("submit", () => { stopped = true; });

  // Typing: told to the room at most every 2.5 s while the composer holds text; shown for 4 s after each.
  const typers = new Map();    // user id -> {name, timer}
  let typingSent = 0;
  input.addEventListener("input", () => {
    if (input.value.trim() && Date.now() - typingSent > 2500 && send({ type: "typing" })) typingSent = Date.now();
  });
  function startedTyping(user) {
    clearTimeout(typers.get(user.id)?.timer);
    typers.set(user.id, { name: user.name, timer: setTimeout(() => stoppedTyping(user.id), 4000) });
    drawTyping();
  }
  function stoppedTyping(userId) {
    if (!typers.has(userId)) return;
    clearTimeout(typers.get(userId).timer);
    typers.delete(userId);
    drawTyping();
  }
  function drawTyping() {
    const names = [...typers.values()].map((entry) => entry.name);
    $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : "Several people are typing…";
  }

  // @mentions: the composer offers the names of the people here and of those who wrote in this room.
  window.GatewayMentions.autocomplete(input, $("mention-list"), () => [
    ...[...people].filter(([id]) => id !== myId).map(([, name]) => name),
    ...[...shown].filter(([id]) => id !== myId).flatMap(([, names]) => [...names]),
  ]);
  const notify = window.GatewayMentions.notifications($("notify-mentions"), say);

  // Phones: the room list, who is online and the account fold into a drawer behind the header's button.
  const toggle = $("drawer-toggle");
  function drawer(open) {
    document.body.classList.toggle("drawer-open", open);
    toggle.setAttribute("aria-expanded", String(open));
  }
  toggle.addEventListener("click", () => drawer(!document.body.classList.contains("drawer-open")));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) { drawer(false); toggle.focus(); }
  });
  window.addEventListener("pagehide", () => { stopped = true; if (socket) socket.close(1000); });
  // Messages this tab had not sent when it was reloaded: they go out (or stay failed) as before.
  try {
    for (const entry of JSON.parse(sessionStorage.getItem(outboxKey) || "[]")) {
      if (typeof entry.clientId === "string" && typeof entry.text === "string") queueMessage(entry.text, entry.clientId, entry.failed);
    }
  } catch { /* unreadable: nothing to restore */ }
  drawRooms();
  setState("connecting");
  connect();
})();
