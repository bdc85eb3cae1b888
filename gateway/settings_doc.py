"""docs/configuration.md's list of settings, rendered from .env.example: one text for both, so they cannot
disagree. `./dev docs` (python -m gateway.settings_doc) rewrites the part between the two markers."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- settings: generated from .env.example by ./dev docs; edit that file, not this list -->"
END = "<!-- settings: end -->"
RULE = "# " + "-" * 100
VARIABLE = re.compile(r"\A(?:# ?)?(GATEWAY_[A-Z0-9_]+)=.*\Z")
# Characters that markdown would read as markup (emphasis, HTML tags) in a plain word.
MARKUP = frozenset("_<>*[]=")
_EDGE = re.compile(r"\A([(\"']*)(.*?)([)\"'.,;:]*)\Z")
PROVIDER_VARIABLE = re.compile(r"\AGATEWAY_PROVIDERS__[A-Z0-9_]+?__([A-Z_]+)\Z")


@dataclass
class Block:
    text: list[str] = field(default_factory=list)  # comment lines, "# " removed
    variables: list[str] = field(default_factory=list)  # the NAME=value lines, as written


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def parse(example: str) -> list[Section]:
    """.env.example's sections (a title between two rules) and their blocks (separated by blank lines)."""
    sections: list[Section] = []
    lines = example.splitlines()
    block = Block()

    def close() -> None:
        nonlocal block
        if sections and (block.text or block.variables):
            sections[-1].blocks.append(block)
        block = Block()

    index = 0
    while index < len(lines):
        line = lines[index]
        if line == RULE and index + 2 < len(lines) and lines[index + 2] == RULE:
            close()
            sections.append(Section(lines[index + 1].removeprefix("# ").strip()))
            index += 3
            continue
        if not line.strip():
            close()
        elif VARIABLE.fullmatch(line):
            block.variables.append(line)
        else:
            block.text.append(line.removeprefix("#").removeprefix(" "))
        index += 1
    close()
    return sections


def _word(word: str) -> str:
    edge = _EDGE.fullmatch(word)
    if edge is None or "`" in word or not MARKUP.intersection(edge.group(2)):
        return word
    before, core, after = edge.groups()
    return f"{before}`{core}`{after}"


def _prose(lines: list[str]) -> str:
    words: list[str] = []
    done: set[int] = set()  # indexes of words already formatted
    for line in lines:
        head, example, tail = line.partition("Example: ")
        for word in head.split():
            if words and len(words) - 1 not in done and words[-1].count("<") > words[-1].count(">"):
                words[-1] += " " + word  # <new key>: one placeholder, one code span
            else:
                words.append(word)
        if example:  # an example value is one code span (JSON, NAME=value), never split into words
            words.append("Example:")
            if tail.strip():
                done.add(len(words))
                words.append(f"`{tail.strip()}`" if MARKUP.intersection(tail) else tail.strip())
    return " ".join(word if index in done else _word(word) for index, word in enumerate(words))


def _names(block: Block) -> list[str]:
    names = []
    for line in block.variables:
        match = VARIABLE.fullmatch(line)
        if match is None:
            continue
        provider = PROVIDER_VARIABLE.fullmatch(match.group(1))
        name = f"GATEWAY_PROVIDERS__<NAME>__{provider.group(1)}" if provider else match.group(1)
        if name not in names:
            names.append(name)
    return names


def _body(block: Block) -> list[str]:
    """Prose as paragraphs; indented lines (tables of values, commands) as they are, in a text block."""
    out: list[str] = []
    prose: list[str] = []
    fixed: list[str] = []
    for line in [*block.text, ""]:
        if line.startswith("  "):
            if prose:
                out += [_prose(prose), ""]
                prose = []
            fixed.append(line)
            continue
        if fixed:
            out += ["```text", *fixed, "```", ""]
            fixed = []
        if line:
            prose.append(line)
    if prose:
        out += [_prose(prose), ""]
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def render(example: str) -> str:
    sections = parse(example)
    out: list[str] = []
    for section in sections:
        names = [name for block in section.blocks for name in _names(block)]
        links = ", ".join(f"[`{name}`](#{slug(name)})" for name in names)
        out.append(f"- [{section.title}](#{slug(section.title)}): {links}")
    out.append("")
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            names = _names(block)
            if len(names) > 1:  # one heading for them all, and an anchor for each
                out += [*(f'<a id="{slug(name)}"></a>' for name in names), ""]
            if names:
                out += ["### " + ", ".join(f"`{name}`" for name in names), ""]
            out += _body(block)
            if block.variables:
                out += ["```sh", *block.variables, "```", ""]
    return "\n".join(out)


def with_settings(doc: str, example: str) -> str:
    """`doc` with the list between its markers replaced by the one rendered from `example`."""
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{render(example)}\n{END}{tail}"


def main() -> int:
    doc = DOC.read_text(encoding="utf-8")
    new = with_settings(doc, EXAMPLE.read_text(encoding="utf-8"))
    if new != doc:
        DOC.write_text(new, encoding="utf-8")
        print(f"rewrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
