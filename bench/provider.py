"""A fake OpenID provider that costs nothing and counts every call: discovery and /userinfo only.

`python bench/provider.py --port P`. A token `bench.<user>[.<anything>]` is valid for user <user>; any
other token gets 401. GET /_bench/calls answers the counts as JSON; GET /_bench/reset zeroes them.
Plain asyncio HTTP/1.1 with keep-alive: no framework between the gateway and the counter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import Counter

calls: Counter[str] = Counter()


def discovery(issuer: str) -> dict[str, object]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def answer(status: int, body: object) -> bytes:
    data = json.dumps(body).encode()
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


def userinfo(authorization: str) -> bytes:
    scheme, _, token = authorization.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) < 2 or parts[0] != "bench" or not parts[1]:
        return answer(401, {"error": "invalid_token"})
    user = parts[1]
    return answer(200, {"sub": user, "name": user, "preferred_username": user, "email": f"{user}@bench.test"})


class Http(asyncio.Protocol):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(rest) < length:
                return  # wait for the body
            self.buffer = rest[length:]
            path = lines[0].split(" ")[1].split("?")[0]
            self.transport.write(self.route(path, headers))

    def route(self, path: str, headers: dict[str, str]) -> bytes:
        if path == "/userinfo":
            calls["userinfo"] += 1
            return userinfo(headers.get("authorization", ""))
        if path == "/.well-known/openid-configuration":
            calls["discovery"] += 1
            return answer(200, discovery(self.issuer))
        if path == "/_bench/calls":
            return answer(200, dict(calls))
        if path == "/_bench/reset":
            calls.clear()
            return answer(200, {})
        calls["other"] += 1
        return answer(404, {"error": "not_found"})


async def serve(port: int) -> None:
    issuer = f"http://127.0.0.1:{port}"
    server = await asyncio.get_running_loop().create_server(lambda: Http(issuer), "127.0.0.1", port, backlog=4096)
    print(f"fake provider {issuer} pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    try:
        import uvloop
        uvloop.run(serve(parser.parse_args().port))
    except ImportError:
        asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
