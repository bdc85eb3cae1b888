"""The `gateway` command, run as a real process: bad configuration is explained line by line, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo import DEMO_CLIENT_ID, demo_provider

PUBLIC_URL = "http://127.0.0.1:8000"
KEY = "cli-test-secret-key-0123456789-abcdefgh"
CLIENT_SECRET = "cli-test-client-s3cret"
TIMEOUT = 60


def run_gateway(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Nothing from the host's GATEWAY_ environment may leak in (settings are case-insensitive).
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def problem_lines(stderr: str) -> list[str]:
    """The CLI's own problem lines (`gateway: <VARIABLE>: <what to do>`), without warnings of ours or libraries'."""
    return [line.removeprefix("gateway: ") for line in stderr.splitlines()
            if line.startswith("gateway: ") and not line.startswith("gateway: warning: ")]


def warning_lines(stderr: str) -> list[str]:
    return [line.removeprefix("gateway: warning: ") for line in stderr.splitlines()
            if line.startswith("gateway: warning: ")]


def named(lines: list[str]) -> list[str]:
    return [line.split(": ", 1)[0] for line in lines]


def write_env(path: Path, issuer: str) -> Path:
    path.write_text(
        f"GATEWAY_PUBLIC_URL={PUBLIC_URL}\n"
        f"GATEWAY_SECRET_KEYS={KEY}\n"
        f"GATEWAY_PROVIDERS__MY_IDP__ISSUER={issuer}\n"
        f"GATEWAY_PROVIDERS__MY_IDP__CLIENT_ID={DEMO_CLIENT_ID}\n"
        f"GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRET={CLIENT_SECRET}\n"
        f"GATEWAY_HISTORY_PATH={path.parent / 'history.sqlite3'}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_serve_with_bad_env_file_names_each_variable(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text(
        "GATEWAY_PUBLIC_URL=https://chat.example.com/app\n"
        "GATEWAY_SECRET_KEYS=short\n"
        "GATEWAY_PROVIDERS__IDP__ISSUER=https://idp.example.com\n",
        encoding="utf-8",
    )

    result = run_gateway(tmp_path, "serve", "--env-file", "bad.env")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == [
        "GATEWAY_PUBLIC_URL", "GATEWAY_SECRET_KEYS", "GATEWAY_PROVIDERS__IDP__CLIENT_ID",
    ]
    assert "short" not in result.stderr


def test_serve_with_unparsable_value(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text(
        f"GATEWAY_PUBLIC_URL={PUBLIC_URL}\nGATEWAY_SECRET_KEYS={KEY}\nGATEWAY_PROVIDERS={{bad\n", encoding="utf-8"
    )

    result = run_gateway(tmp_path, "serve", "--env-file", "bad.env")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == ["GATEWAY_PROVIDERS"]


def test_serve_with_missing_env_file(tmp_path: Path) -> None:
    result = run_gateway(tmp_path, "serve", "--env-file", "missing.env")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert problem_lines(result.stderr) == ["--env-file missing.env: no such file"]


def test_serve_with_nothing_configured(tmp_path: Path) -> None:
    result = run_gateway(tmp_path, "serve")  # no .env in tmp_path, no GATEWAY_ variables

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == ["GATEWAY_PUBLIC_URL", "GATEWAY_SECRET_KEYS", "GATEWAY_PROVIDERS"]


def test_check_config_with_unreachable_provider(tmp_path: Path, closed_port: int) -> None:
    write_env(tmp_path / "gateway.env", f"http://127.0.0.1:{closed_port}")

    result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert named(lines) == ["GATEWAY_PROVIDERS__MY_IDP__ISSUER"]
    assert f"127.0.0.1:{closed_port}" in lines[0]
    assert result.stderr.count(f"127.0.0.1:{closed_port}") == 1  # not again as the provider's warning log
    assert "configuration ok" not in result.stdout


def test_check_config_with_bad_env_file(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text(f"GATEWAY_PUBLIC_URL={PUBLIC_URL}\n", encoding="utf-8")

    result = run_gateway(tmp_path, "check-config", "--env-file", "bad.env")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == ["GATEWAY_SECRET_KEYS", "GATEWAY_PROVIDERS"]


def test_check_config_with_reachable_provider(tmp_path: Path) -> None:
    with demo_provider() as issuer:
        write_env(tmp_path / "gateway.env", issuer)
        result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert problem_lines(result.stderr) == []
    assert "configuration ok" in result.stdout
    assert f"{PUBLIC_URL}/auth/my-idp/callback" in result.stdout
    # The demo provider advertises neither logout channel: the URIs to register, and how to turn them on.
    assert (f"back-channel logout URI: {PUBLIC_URL}/auth/my-idp/backchannel-logout (not advertised by the "
            "provider; not accepted; GATEWAY_PROVIDERS__MY_IDP__BACKCHANNEL_LOGOUT=on accepts it)") in result.stdout
    assert f"front-channel logout URI: {PUBLIC_URL}/auth/my-idp/frontchannel-logout" in result.stdout
    output = result.stdout + result.stderr
    assert KEY not in output
    assert CLIENT_SECRET not in output


def test_demo_refuses_public_host_without_unsafe_public(tmp_path: Path) -> None:
    result = run_gateway(tmp_path, "demo", "--host", "0.0.0.0", "--port", "0")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 1
    assert lines[0].startswith("--host 0.0.0.0:")
    assert "--unsafe-public" in lines[0]


def add_lines(path: Path, *lines: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "".join(f"{line}\n" for line in lines), encoding="utf-8")


def test_check_config_with_github_needs_no_discovery(tmp_path: Path) -> None:
    (tmp_path / "gateway.env").write_text(
        f"GATEWAY_PUBLIC_URL={PUBLIC_URL}\n"
        f"GATEWAY_SECRET_KEYS={KEY}\n"
        "GATEWAY_PROVIDERS__GITHUB__PRESET=github\n"
        "GATEWAY_PROVIDERS__GITHUB__CLIENT_ID=Iv1.0123456789abcdef\n"
        f"GATEWAY_PROVIDERS__GITHUB__CLIENT_SECRET={CLIENT_SECRET}\n"
        f"GATEWAY_HISTORY_PATH={tmp_path / 'history.sqlite3'}\n",
        encoding="utf-8",
    )

    result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")  # nothing is fetched

    assert result.returncode == 0, result.stdout + result.stderr
    assert "provider github: ok (https://github.com, validation github)" in result.stdout
    assert f"register the redirect URI {PUBLIC_URL}/auth/github/callback" in result.stdout
    assert "configuration ok" in result.stdout
    assert CLIENT_SECRET not in result.stdout + result.stderr


def test_check_config_with_jwt_validation_fetches_the_jwks(tmp_path: Path) -> None:
    with demo_provider() as issuer:
        env = write_env(tmp_path / "gateway.env", issuer)
        add_lines(env, "GATEWAY_PROVIDERS__MY_IDP__VALIDATION=jwt")
        result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"provider my-idp: ok ({issuer}, validation jwt)" in result.stdout
    assert f"{PUBLIC_URL}/auth/my-idp/callback" in result.stdout


def test_check_config_names_a_strategy_the_provider_cannot_serve(tmp_path: Path) -> None:
    with demo_provider() as issuer:  # its discovery lists no introspection_endpoint
        env = write_env(tmp_path / "gateway.env", issuer)
        add_lines(env, "GATEWAY_PROVIDERS__MY_IDP__VALIDATION=introspection")
        result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert named(lines) == ["GATEWAY_PROVIDERS__MY_IDP__VALIDATION"]
    assert "introspection_endpoint" in lines[0]
    assert "configuration ok" not in result.stdout


def test_check_config_with_a_cookie_domain_outside_the_public_url(tmp_path: Path) -> None:
    env = write_env(tmp_path / "gateway.env", "https://idp.example.com")
    add_lines(env, "GATEWAY_COOKIE_DOMAIN=example.com")  # the public URL is http://127.0.0.1:8000

    result = run_gateway(tmp_path, "check-config", "--env-file", "gateway.env")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert named(problem_lines(result.stderr)) == ["GATEWAY_COOKIE_DOMAIN"]


def test_serve_with_redis_down_exits_2_naming_the_broker(tmp_path: Path, closed_port: int) -> None:
    env_file = write_env(tmp_path / "gateway.env", "http://127.0.0.1:9/unused")
    with env_file.open("a", encoding="utf-8") as extra:
        extra.write(f"GATEWAY_BROKER_URL=redis://:s3cret-pass@127.0.0.1:{closed_port}/0\n")
    result = run_gateway(tmp_path, "serve", "--env-file", "gateway.env", "--port", str(closed_port))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert named(lines) == ["GATEWAY_BROKER_URL"]
    assert "cannot reach Redis" in lines[0]
    assert "s3cret-pass" not in result.stderr  # the password is masked
