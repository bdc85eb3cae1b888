"""gateway/static/names.js under Node: which names look alike, and the provider and short id the chat page
shows next to them (the page itself: tests/e2e/test_names_browser.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NAMES_JS = Path(__file__).resolve().parents[1] / "gateway" / "static" / "names.js"
RUNNER = """
const vm = require("vm"), fs = require("fs");
const sandbox = {};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), sandbox);
const { nameKey, qualifiers } = sandbox.GatewayNames;
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify({
  keys: cases.keys.map(nameKey),
  qualifiers: cases.qualifiers.map((pairs) => Object.fromEntries(qualifiers(pairs))),
}));
"""


def run(keys: list[str] = [], qualifiers: list[list[list[str]]] = []) -> dict[str, Any]:  # noqa: B006
    node = shutil.which("node")
    if node is None:
        pytest.skip("names.js unit checks need Node.js: no `node` on PATH")
    cases = json.dumps({"keys": keys, "qualifiers": qualifiers})
    done = subprocess.run([node, "-e", RUNNER, str(NAMES_JS)], input=cases, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_names_that_look_alike_have_one_key() -> None:
    look_alikes = ["alice", "Alice", "ALICE", " alice ", "al ice", "\u0430lice", "ali\u200bce", "ali\u00adce",
                   "\uff41\uff4c\uff49\uff43\uff45", "aIice", "a1ice", "al\u0456ce", "alice\u202e", "a\tlice"]
    keys = run(keys=[*look_alikes, "bob", "alicia", "b0b", "m\u0430llory", "rnallory"])["keys"]
    assert set(keys[:len(look_alikes)]) == {keys[0]}
    assert keys[len(look_alikes):] == [keys[-5], keys[-4], keys[-5], keys[-1], keys[-1]]
    assert keys[0] not in keys[len(look_alikes):]


def test_only_users_whose_names_collide_get_a_label() -> None:
    pairs = [["demo:alice", "alice"], ["demo:mallory", "Alice"], ["demo:bob", "bob"]]
    (labels,) = run(qualifiers=[pairs])["qualifiers"]
    assert labels == {"demo:alice": "demo:alice", "demo:mallory": "demo:mallory"}


def test_labels_are_short_and_always_tell_the_users_apart() -> None:
    pairs = [["google:109876543210987654321", "Alice"], ["google:109876543299999999999", "alice"],
             ["github:42", "alice"], ["gitlab:42", "alice"],
             ["keycloak:5f0c2d9e-aaaa-4b7e-9c1e-3d2b1a0f9e8d", "alice"]]
    (labels,) = run(qualifiers=[pairs])["qualifiers"]
    assert set(labels) == {id_ for id_, _ in pairs}
    assert len(set(labels.values())) == len(pairs)  # no two alike
    assert labels["github:42"] == "github:42" and labels["gitlab:42"] == "gitlab:42"
    keycloak = labels["keycloak:5f0c2d9e-aaaa-4b7e-9c1e-3d2b1a0f9e8d"]
    assert keycloak.startswith("keycloak:5f0c2d9e") and keycloak.endswith("…") and len(keycloak) < 30
    google = [labels[id_] for id_, _ in pairs[:2]]
    assert all(label.startswith("google:10987654") and label.endswith("…") for label in google)
    assert all(len(label) < len("google:109876543210987654321") for label in google)


def test_a_user_who_showed_a_name_once_is_still_labelled_after_a_rename() -> None:
    (labels,) = run(qualifiers=[[["demo:alice", "alice"], ["demo:m", "alice"], ["demo:m", "zed"]]])["qualifiers"]
    assert set(labels) == {"demo:alice", "demo:m"}


def test_one_user_with_two_sockets_or_names_is_no_collision() -> None:
    (labels,) = run(qualifiers=[[["demo:alice", "alice"], ["demo:alice", "Alice"]]])["qualifiers"]
    assert labels == {}
