// Safe rich text for chat messages: `code`, *emphasis* and http(s) links. This file only splits a text into
// tokens; chat.js turns them into nodes with textContent and element properties, never innerHTML, so
// nothing a user types becomes markup. tests/test_richtext_js.py runs it under Node.
"use strict";
(function (root) {
  // `code` (no newline, no backtick inside) | a link | *emphasis* (no spaces just inside the stars).
  const PATTERN = /`([^`\n]+)`|\b(https?:\/\/[^\s<>"'`]+)|(?<![\w*])\*([^\s*](?:[^*\n]*[^\s*])?)\*(?![\w*])/giu;
  const TRAILING = /[.,;:!?'")\]}]+$/u;  // punctuation after a link belongs to the sentence

  function linkOf(raw) {
    let text = raw.replace(TRAILING, "");
    // Keep a closing parenthesis the link opened: https://en.wikipedia.org/wiki/Foo_(bar)
    const rest = raw.slice(text.length);
    if (rest.startsWith(")") && (text.match(/\(/g) || []).length > (text.match(/\)/g) || []).length) text += ")";
    let url;
    try { url = new URL(text); } catch { return null; }
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    return { text, href: url.href };
  }

  function tokens(text) {
    const out = [];
    let at = 0;
    const plain = (end) => { if (end > at) out.push({ kind: "text", text: text.slice(at, end) }); };
    for (const match of text.matchAll(PATTERN)) {
      const start = match.index;
      if (start < at) continue;
      if (match[1] !== undefined) {
        plain(start);
        out.push({ kind: "code", text: match[1] });
        at = start + match[0].length;
      } else if (match[2] !== undefined) {
        const link = linkOf(match[2]);
        if (!link) continue;
        plain(start);
        out.push({ kind: "link", text: link.text, href: link.href });
        at = start + link.text.length;
      } else {
        plain(start);
        out.push({ kind: "em", text: match[3] });
        at = start + match[0].length;
      }
    }
    plain(text.length);
    return out;
  }

  root.GatewayText = { tokens };
})(typeof window !== "undefined" ? window : globalThis);
