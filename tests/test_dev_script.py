"""`./dev`: `help` lists every command it has, one line each; an unknown word says so and lists them."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

from gateway.cli import parser

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "dev"


def run_dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEV), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def dev_commands() -> set[str]:
    """The words the script's `case` handles (`  demo)`, `  serve|check-config)`), but the catch-all."""
    labels = re.findall(r"^  ([a-z|-]+)\)$", DEV.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {word for label in labels for word in label.split("|") if not word.startswith("-")}


def listed(usage: str) -> set[str]:
    return set(re.findall(r"^  ([a-z-]+)", usage, flags=re.MULTILINE))


def test_help_lists_every_command_of_the_script_and_of_gateway() -> None:
    result = run_dev("help")

    assert result.returncode == 0, result.stderr
    assert {"demo", "test", "lint", "bench", "help"} <= dev_commands()
    assert listed(result.stdout) == dev_commands()
    subparsers = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) <= listed(result.stdout)


def test_an_unknown_word_is_refused_with_the_list() -> None:
    result = run_dev("frobnicate")

    assert result.returncode == 2
    assert result.stderr.startswith("dev: unknown command 'frobnicate'\n")
    assert listed(result.stderr) == dev_commands()
    assert "Traceback" not in result.stderr


def test_gateway_commands_still_pass_through() -> None:
    result = run_dev("check-config", "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gateway check-config")
