// Names that look alike. Display names are the provider's `name` claim, which users choose: anyone can be
// "alice". When two users in a room have names that look the same, the page shows each one's provider and
// a short id next to the name (user ids are "<provider>:<subject>", unique). No DOM here: chat.js renders,
// with textContent only; tests/test_names_js.py runs this file under Node.
"use strict";
(function (root) {
  // Letters that render like Latin ones (Cyrillic, Greek, a few IPA), after lower-casing. Not the whole of
  // Unicode's confusables (UTS #39), but the usual suspects for "аlice" with a Cyrillic а.
  const LOOK_ALIKES = new Map(Object.entries({
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ɡ": "g", "ɩ": "i", "ı": "i", "ο": "o", "α": "a", "ν": "v", "ρ": "p", "τ": "t", "υ": "u",
    "ι": "i", "κ": "k", "χ": "x", "ϲ": "c", "ϳ": "j", "ℓ": "l", "ⅼ": "l", "ǀ": "l",
  }));
  // Invisible and spacing characters: "ali\u200bce", "alice " and "al ice" are all "alice" to a reader.
  const INVISIBLE = /[\p{Cc}\p{Cf}\p{Z}\u034f\u115f\u1160\u3164\uffa0]/gu;
  const SUBJECT_WHOLE = 12;   // shown whole up to this length
  const SUBJECT_SHORT = 8;    // else this many characters (more when two would still look the same)

  function nameKey(name) {
    const folded = String(name).normalize("NFKC").replace(INVISIBLE, "").toLowerCase();
    let key = "";
    for (const char of folded) key += LOOK_ALIKES.get(char) || char;
    // Shapes that pass for others in many fonts: I and l and 1, O and 0, rn and m, vv and w. A false match
    // costs a label next to a name; a missed one lets someone pass for someone else.
    return key.replace(/rn/g, "m").replace(/vv/g, "w").replace(/[il1|!]/g, "l").replace(/0/g, "o");
  }

  function splitId(id) {
    const at = String(id).indexOf(":");
    return at < 0 ? ["", String(id)] : [id.slice(0, at), id.slice(at + 1)];
  }

  function label(id, length) {
    const [provider, subject] = splitId(id);
    const chars = [...subject];
    const shown = chars.length <= Math.max(length, SUBJECT_WHOLE) ? subject : chars.slice(0, length).join("") + "…";
    return provider ? `${provider}:${shown}` : shown;
  }

  // pairs: [user id, display name] for every name shown in the room (a user may have shown two). Returns a
  // Map of user id -> label for the users whose name looks like another user's only; within a group of
  // look-alikes the labels all differ.
  function qualifiers(pairs) {
    const groups = new Map();
    for (const [id, name] of pairs) {
      const key = nameKey(name);
      if (!groups.has(key)) groups.set(key, new Set());
      groups.get(key).add(id);
    }
    const result = new Map();
    for (const group of groups.values()) {
      if (group.size < 2) continue;
      const ids = [...group];
      const longest = Math.max(...ids.map((id) => [...splitId(id)[1]].length));
      let length = SUBJECT_SHORT;
      while (length < longest && new Set(ids.map((id) => label(id, length))).size < ids.length) length += 4;
      for (const id of ids) if (!result.has(id)) result.set(id, label(id, length));
    }
    return result;
  }

  root.GatewayNames = { nameKey, qualifiers };
})(typeof window === "undefined" ? globalThis : window);
