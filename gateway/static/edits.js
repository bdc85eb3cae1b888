// Editing and deleting one's own messages on the chat page (frames `edit` and `delete`, docs/protocol.md).
// chat.js owns the socket and the list; this file draws a message's state and its Edit / Delete actions.
// Text goes in through textContent (and chat.js's rich text nodes) only.
"use strict";
(function (root) {
  // `chat`: { send(frame) -> bool, richText(text) -> [nodes], windowMs, say(text) }.
  function create(chat) {
    const early = new Map();   // id -> change that came before its message (another instance was quicker)

    function show(item, message) {
      const body = item.querySelector(".text");
      item.querySelector(".edited")?.remove();
      if (message.deleted) {
        item.classList.add("deleted");
        body.replaceChildren("message deleted");
        item.querySelector(".actions")?.remove();
        return;
      }
      body.replaceChildren(...chat.richText(message.text));
      if (message.edited_at) {
        const marker = document.createElement("span");
        marker.className = "edited";
        marker.textContent = "(edited)";
        marker.title = "edited " + new Date(message.edited_at).toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
        item.querySelector("time").after(" ", marker);
      }
    }

    // A message as it came (history or live), with the change that may have come before it.
    function render(item, message, mine) {
      const change = early.get(message.id);
      if (change) { early.delete(message.id); Object.assign(message, fields(change)); }
      if (message.deleted || message.edited_at) show(item, message);
      if (mine && !message.deleted && Date.now() - message.ts < chat.windowMs) addActions(item, message);
    }

    function fields(change) {
      return change.type === "delete" ? { text: "", deleted: true } : { text: change.text, edited_at: change.edited_at };
    }

    // An `edit` or `delete` frame: to the message shown, or kept until it comes.
    function apply(item, change) {
      if (!item) {
        if (early.size >= 200) early.delete(early.keys().next().value);
        early.set(change.id, change);
        return;
      }
      const message = Object.assign({ ts: 0 }, fields(change));
      show(item, message);
      if (change.type === "edit") item.querySelector(".editor")?.remove();
    }

    function addActions(item, message) {
      const bar = document.createElement("span");
      bar.className = "actions";
      const edit = button("Edit", () => startEditing(item, message));
      const drop = button("Delete", () => {
        if (window.confirm("Delete this message for everyone?")) chat.send({ type: "delete", id: message.id });
      });
      bar.append(edit, drop);
      item.querySelector("time").after(bar);  // beside the time: no line of its own
      // The buttons go when the window closes: the server would refuse them then.
      const left = message.ts + chat.windowMs - Date.now();
      setTimeout(() => bar.remove(), Math.max(0, Math.min(left, 2 ** 31 - 1)));
    }

    function button(label, onClick) {
      const node = document.createElement("button");
      node.type = "button";
      node.className = "secondary";
      node.textContent = label;
      node.addEventListener("click", onClick);
      return node;
    }

    function startEditing(item, message) {
      if (item.querySelector(".editor")) return;
      const form = document.createElement("form");
      form.className = "editor";
      const field = document.createElement("input");
      field.maxLength = 2000;
      field.required = true;
      field.value = item.querySelector(".text").textContent;
      field.setAttribute("aria-label", "Edit your message");
      const save = button("Save", () => {});
      save.type = "submit";
      const cancel = button("Cancel", () => form.remove());
      form.append(field, save, cancel);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const text = field.value.trim();
        if (text && chat.send({ type: "edit", id: message.id, text })) form.remove();
      });
      field.addEventListener("keydown", (event) => { if (event.key === "Escape") form.remove(); });
      item.append(form);
      field.focus();
    }

    return { render, apply };
  }

  root.GatewayEdits = { create };
})(window);
