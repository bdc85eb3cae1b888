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

  // `@name` for the reader's own name (any case, not inside a longer word): highlighted for them.
  function mentionPattern(name) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(?<![\\p{L}\\p{N}_@])@${escaped}(?![\\p{L}\\p{N}_])`, "giu");
  }

  function withMentions(list, name) {
    if (!name || !name.trim()) return list;
    const pattern = mentionPattern(name);
    return list.flatMap((token) => {
      if (token.kind !== "text") return [token];
      const out = [];
      let at = 0;
      for (const match of token.text.matchAll(pattern)) {
        if (match.index > at) out.push({ kind: "text", text: token.text.slice(at, match.index) });
        out.push({ kind: "mention", text: match[0] });
        at = match.index + match[0].length;
      }
      if (at < token.text.length) out.push({ kind: "text", text: token.text.slice(at) });
      return out;
    });
  }

  // `me`: the reader's display name, to mark where the text mentions them (optional).
  function tokens(text, me) {
    return withMentions(split(text), me);
  }

  function split(text) {
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
