"""The documentation: docs/configuration.md and .env.example list exactly the settings there are, every
GATEWAY_* name mentioned anywhere is one, and every relative link (file and #anchor) resolves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.settings import Settings
from gateway.settings_doc import BEGIN, DOC, END, EXAMPLE, RULE, render, slug, with_settings
from gateway.unknown_settings import NOT_FROM_THE_ENVIRONMENT, closest_setting, setting_names

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = "```"


def defined_names(text: str) -> set[str]:
    """Variables set (`NAME=`) or shown at their default (`# NAME=`) on a line of their own, a provider's
    sub-keys written GATEWAY_PROVIDERS__<NAME>__*."""
    names = re.findall(r"^(?:#\s*)?(GATEWAY_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    return {re.sub(r"\AGATEWAY_PROVIDERS__[A-Z0-9_]+?__", "GATEWAY_PROVIDERS__<NAME>__", name) for name in names}


def expected_names() -> set[str]:
    """From the one source, the settings model: each top-level setting (rooms as one JSON value, as
    .env.example shows it) and each provider sub-key."""
    top = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields if name not in NOT_FROM_THE_ENVIRONMENT}
    providers = {name for name in setting_names() if name.startswith("GATEWAY_PROVIDERS__")}
    return top - {"GATEWAY_PROVIDERS"} | providers


def test_configuration_md_lists_what_env_example_says() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert BEGIN in doc and END in doc
    assert with_settings(doc, EXAMPLE.read_text(encoding="utf-8")) == doc, "run ./dev docs"


def test_every_setting_is_in_both_and_nothing_else() -> None:
    doc = DOC.read_text(encoding="utf-8")
    generated = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    headings = set(re.findall(r"`(GATEWAY_[A-Z0-9_<>]+)`", "\n".join(re.findall(r"^### .*$", generated, re.M))))

    assert defined_names(EXAMPLE.read_text(encoding="utf-8")) == expected_names()
    assert defined_names(generated) == expected_names()
    assert headings == expected_names()


def test_a_setting_missing_from_env_example_would_be_noticed() -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    without = re.sub(r"^# GATEWAY_JWT_LEEWAY=.*\n", "", example, flags=re.MULTILINE)

    assert without != example
    assert expected_names() - defined_names(without) == {"GATEWAY_JWT_LEEWAY"}
    assert "GATEWAY_JWT_LEEWAY=" not in render(without)


def mentioned_names(text: str) -> set[str]:
    """Every GATEWAY_* name in a text, <NAME>-style placeholders filled in; prefixes (GATEWAY_ALLOWED_*) and
    the lines that show the error a typo gets left out."""
    kept = "\n".join(line for line in text.splitlines() if "not a setting" not in line)
    names = re.findall(r"GATEWAY_(?:[A-Z0-9_]|<[A-Z]+>)*", kept)
    return {re.sub(r"<[A-Z]+>", "X", name) for name in names if not name.endswith("_")}


@pytest.mark.parametrize("path", [*PAGES, ROOT / ".env.example"], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_variable_the_docs_name_is_a_setting(path: Path) -> None:
    wrong = {name: closest_setting(name) for name in mentioned_names(path.read_text(encoding="utf-8"))
             if closest_setting(name) != name}
    assert wrong == {}


def anchors(path: Path) -> set[str]:
    """The #fragments a page offers: its headings' GitHub slugs (repeats get -1, -2) and <a id> tags."""
    found: set[str] = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(FENCE):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = re.fullmatch(r"#{1,6} (.+)", line)
        if heading:
            base = slug(heading.group(1).replace("`", ""))
            name, count = base, 0
            while name in found:
                count += 1
                name = f"{base}-{count}"
            found.add(name)
        found.update(re.findall(r'<a id="([^"]+)"></a>', line))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    text = path.read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    for target in LINK.findall(prose):
        if re.match(r"\A[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if root not in resolved.parents and resolved != root:
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n", encoding="utf-8")
    probe = tmp_path / "probe.md"
    probe.write_text("# Title\n\n## A `code` heading\n\n```sh\n# not a heading\n```\n"
                     "[ok](#a-code-heading) [self](#title) [file](other.md#other-page) [web](https://example.com/x#y)\n"
                     "[bad](#not-a-heading) [gone](missing.md) [wrong](other.md#nope) [out](../elsewhere.md)\n",
                     encoding="utf-8")

    assert broken_links(probe, tmp_path) == [
        "#not-a-heading: no heading #not-a-heading in probe.md",
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "../elsewhere.md: outside the repository",
    ]
    page = ROOT / "docs" / "configuration.md"
    assert {"gateway_public_url", "gateway_failed_auth_rate"} <= anchors(page)  # a heading of two names


def test_the_repository_names_no_outside_document() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    word = "CON" + "TRACT"  # spelt so that this file does not name it either
    # The license's legal text says the word in its own sense ("IN AN ACTION OF ...").
    naming = [name for name in files if (ROOT / name).is_file() and not name.endswith(".png") and name != "LICENSE"
              and word in (ROOT / name).read_text(encoding="utf-8", errors="replace")]
    assert naming == []


def test_rendering_keeps_markup_out_of_the_prose() -> None:
    example = "\n".join([RULE, "# Limits", RULE, "", "# Uses __Host- cookies and <name>, never raw.",
                         '# Example: {"a_b": [1]}', "# GATEWAY_X=1", "# GATEWAY_Y=2", ""])

    out = render(example)

    assert "- [Limits](#limits): [`GATEWAY_X`](#gateway_x), [`GATEWAY_Y`](#gateway_y)" in out
    assert "Uses `__Host-` cookies and `<name>`, never raw." in out
    assert 'Example: `{"a_b": [1]}`' in out
    assert '<a id="gateway_x"></a>\n<a id="gateway_y"></a>\n\n### `GATEWAY_X`, `GATEWAY_Y`' in out
    assert "```sh\n# GATEWAY_X=1\n# GATEWAY_Y=2\n```" in out
