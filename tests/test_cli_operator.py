"""An operator's first hour with the `gateway` command: typos refused, suspicious settings warned about,
options that explain themselves, a taken port named, a start-up without third-party noise."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import parser
from gateway.demo import demo_provider
from tests.test_cli import (
    PUBLIC_URL,
    add_lines,
    named,
    problem_lines,
    run_gateway,
    warning_lines,
    write_env,
)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_unknown_variables_stop_the_command_with_a_suggestion(tmp_path: Path, command: str) -> None:
    env = write_env(tmp_path / "gateway.env", "https://idp.example.com")
    add_lines(env, "GATEWAY_ALLOWED_EMAIL=alice@example.com", "GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRT=x")

    result = run_gateway(tmp_path, command, "--env-file", "gateway.env")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert problem_lines(result.stderr) == [
        "GATEWAY_ALLOWED_EMAIL: not a setting (in gateway.env); did you mean GATEWAY_ALLOWED_EMAILS?",
        "GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRT: not a setting (in gateway.env); "
        "did you mean GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRET?",
    ]


def test_an_unknown_variable_in_the_environment_is_refused_too(tmp_path: Path) -> None:
    env = write_env(tmp_path / "gateway.env", "https://idp.example.com")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--env-file", str(env)],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "GATEWAY_ALLOWED_GROUP": "staff"},
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert result.returncode == 2, result.stderr
    assert problem_lines(result.stderr) == [
        "GATEWAY_ALLOWED_GROUP: not a setting (in the environment); did you mean GATEWAY_ALLOWED_GROUPS?"]


def test_check_config_warns_about_suspicious_settings_and_still_passes(tmp_path: Path) -> None:
    with demo_provider() as issuer:
        env = write_env(tmp_path / "gateway.env", issuer)
        env.write_text(env.read_text(encoding="utf-8").replace(PUBLIC_URL, "http://chat.example.com"),
                       encoding="utf-8")
        add_lines(env, "GATEWAY_PROVIDERS__GH__PRESET=github", "GATEWAY_PROVIDERS__GH__CLIENT_ID=Iv1.x")
        result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 0, result.stdout + result.stderr
    assert named(warning_lines(result.stderr)) == ["GATEWAY_PUBLIC_URL", "GATEWAY_ALLOWED_*"]
    assert "anyone with an account can sign in" in warning_lines(result.stderr)[1]
    assert "configuration ok" in result.stdout


def test_start_up_prints_no_deprecation_warnings(tmp_path: Path) -> None:
    with demo_provider() as issuer:
        write_env(tmp_path / "gateway.env", issuer)
        result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_taken_port_is_named_with_a_way_out(tmp_path: Path, taken_port: int, command: str) -> None:
    write_env(tmp_path / ".env", "http://127.0.0.1:9/unused")

    result = run_gateway(tmp_path, command, "--port", str(taken_port))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert problem_lines(result.stderr) == [
        f"--port {taken_port}: 127.0.0.1:{taken_port} is already in use (another gateway?); stop it, "
        f"or choose another port: --port {taken_port + 1}"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["demo", "serve", "check-config"])
def test_every_option_has_a_description_and_its_default(command: str) -> None:
    sub = subcommands()[command]
    options = [action for action in sub._actions if not isinstance(action, argparse._HelpAction)]
    assert options
    for action in options:
        assert action.help, f"{command} {action.option_strings} has no description"

    text = " ".join(sub.format_help().split())  # argparse wraps lines
    for action in options:
        assert f"(default: {action.default})" in text, f"{command} {action.option_strings}: no default shown"


def test_the_demo_prints_one_banner(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    with subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--port", "0"], cwd=tmp_path, env=env,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            lines = [process.stderr.readline() for _ in range(5)]
        finally:
            process.terminate()
            process.wait(20)
        rest = process.stderr.read()

    assert lines[0] == "gateway demo\n", lines
    assert lines[1].startswith("  open      http://127.0.0.1:") and lines[1].endswith("/chat\n")
    assert "embedded (oidc-provider-mock)" in lines[2] and "anyone can sign in as anyone" in lines[2]
    assert lines[3] == f"  history   {tmp_path.resolve() / 'gateway-history.sqlite3'}\n"
    assert lines[4].startswith("  restart   signs everyone out")
    assert "Warning" not in "".join(lines) + rest and "Traceback" not in rest


def test_an_address_not_on_this_machine_is_named(tmp_path: Path) -> None:
    write_env(tmp_path / ".env", "http://127.0.0.1:9/unused")

    result = run_gateway(tmp_path, "serve", "--host", "192.0.2.1", "--port", "8000")  # TEST-NET-1: nobody's

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == ["--host 192.0.2.1"]


def test_the_app_that_serve_reload_builds_prints_no_deprecation_warnings(tmp_path: Path) -> None:
    write_env(tmp_path / ".env", "http://127.0.0.1:9/unused")
    # What uvicorn's reloader runs in its child process, where main() never ran.
    result = subprocess.run([sys.executable, "-c", "import gateway.cli; gateway.cli.app_from_env(); print('built')"],
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
                            check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "built\n"
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr
