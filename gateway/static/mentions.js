// @mentions on the chat page: the composer's autocomplete from the room's members (a WAI-ARIA combobox),
// and opt-in browser notifications for a mention while the tab is hidden. No markup from users: names go
// in through textContent.
"use strict";
(function (root) {
  const MAX_SHOWN = 6;

  // `input`: the composer; `box`: an empty <ul>; `names()`: the names to offer, best first.
  function autocomplete(input, box, names) {
    let shown = [];
    let active = -1;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", box.id);
    input.setAttribute("aria-expanded", "false");
    box.setAttribute("role", "listbox");
    box.setAttribute("aria-label", "People to mention");
    box.hidden = true;

    function query() {
      const before = input.value.slice(0, input.selectionStart ?? input.value.length);
      const match = /(^|\s)@([^\s@]{0,32})$/u.exec(before);
      return match ? { prefix: match[2], start: before.length - match[2].length - 1 } : null;
    }

    function close() {
      shown = [];
      active = -1;
      box.hidden = true;
      box.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function open() {
      const found = query();
      if (!found) return close();
      const prefix = found.prefix.toLocaleLowerCase();
      shown = [...new Set(names())].filter((name) => name.toLocaleLowerCase().startsWith(prefix)).slice(0, MAX_SHOWN);
      // Nothing to offer, or the name is typed out already: Enter sends, as without the list.
      if (!shown.length || (shown.length === 1 && shown[0].toLocaleLowerCase() === prefix)) return close();
      active = 0;
      box.replaceChildren(...shown.map((name, index) => {
        const option = document.createElement("li");
        option.id = `${box.id}-${index}`;
        option.setAttribute("role", "option");
        option.textContent = "@" + name;
        option.addEventListener("mousedown", (event) => { event.preventDefault(); pick(index); });
        return option;
      }));
      box.hidden = false;
      input.setAttribute("aria-expanded", "true");
      highlight();
    }

    function highlight() {
      [...box.children].forEach((option, index) => option.setAttribute("aria-selected", String(index === active)));
      input.setAttribute("aria-activedescendant", `${box.id}-${active}`);
    }

    function pick(index) {
      const found = query();
      if (!found) return close();
      const end = input.selectionStart ?? input.value.length;
      const inserted = "@" + shown[index] + " ";
      input.value = input.value.slice(0, found.start) + inserted + input.value.slice(end);
      const caret = found.start + inserted.length;
      input.setSelectionRange(caret, caret);
      close();
      input.focus();
    }

    input.addEventListener("input", open);
    input.addEventListener("blur", close);
    input.addEventListener("keydown", (event) => {
      if (box.hidden) return;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        active = (active + (event.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
        highlight();
      } else if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();         // picking a name, not sending
        event.stopImmediatePropagation();
        pick(active);
      } else if (event.key === "Escape") {
        close();
      }
    });
  }

  // The "Notify me when mentioned" switch: asks the browser's permission when turned on; remembered here.
  function notifications(checkbox, say) {
    const key = "gateway.notify-mentions";
    const supported = "Notification" in window;
    checkbox.disabled = !supported;
    checkbox.checked = supported && localStorage.getItem(key) === "1" && Notification.permission === "granted";
    checkbox.addEventListener("change", async () => {
      if (!checkbox.checked) { localStorage.removeItem(key); return; }
      const answer = await Notification.requestPermission();
      checkbox.checked = answer === "granted";
      if (checkbox.checked) localStorage.setItem(key, "1");
      else say("The browser did not allow notifications for this site.");
    });
    return function notify(title, body) {
      if (!checkbox.checked || !document.hidden || Notification.permission !== "granted") return;
      const note = new Notification(title, { body: body.slice(0, 140), tag: "gateway-mention" });
      note.addEventListener("click", () => { window.focus(); note.close(); });
    };
  }

  root.GatewayMentions = { autocomplete, notifications };
})(window);
