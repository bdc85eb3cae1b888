"""Sealing: authenticated encryption of the small JSON payloads every cookie of the gateway carries.

Keys come from GATEWAY_SECRET_KEYS through HKDF, one derived key per purpose; the first secret seals,
all of them open (rotation). Fernet is AES-128-CBC + HMAC-SHA256: authenticated encryption. The cookies
themselves (names, chunks, session ids) are gateway.cookies' and gateway.path_cookies'.
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_PLAINTEXT_BYTES = 64 * 1024  # what a compressed seal may inflate to
# A Fernet token as Fernet writes it. Its decoder is lenient (it skips stray characters and ignores what
# follows the padding), so a value with junk around a genuine seal would open: only the canonical form does.
FERNET_TOKEN = re.compile(r"\A(?:[A-Za-z0-9_-]{4})+(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?\Z")


def derive_key(secret: str, purpose: str) -> bytes:
    """The 32-byte key of one purpose ("token cookie", "login state", …) derived from one secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"gateway {purpose}".encode()).derive(
        secret.encode()
    )


class Sealer:
    """Authenticated encryption of small JSON payloads, with key rotation."""

    def __init__(self, secrets: Sequence[str], purpose: str, clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("Sealer needs at least one secret")
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(derive_key(s, purpose))) for s in secrets]
        )
        self._clock = clock

    def seal(self, payload: dict[str, Any], compress: bool = False) -> str:
        """`compress` for big payloads: a JWT's base64 text deflates to about three quarters. Nothing an
        attacker chooses is sealed next to the secret, so compression leaks nothing (no CRIME)."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        if compress:
            deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = b"z" + deflate.compress(data) + deflate.flush()  # JSON never starts with "z"
        return self._fernet.encrypt_at_time(data, int(self._clock())).decode("ascii")

    @staticmethod
    def sealed_at(sealed: str) -> int:
        """When `sealed`, a value `open` accepted, was sealed: Fernet's timestamp, read from the token's
        first 9 bytes (version, then the time; 12 base64 characters). `open` verified them already: not
        MultiFernet.extract_timestamp, which would check the HMAC a second time."""
        return int.from_bytes(base64.urlsafe_b64decode(sealed[:12])[1:9], "big")

    def open(self, sealed: str, max_age: int) -> dict[str, Any] | None:
        """The payload, or None for anything tampered, foreign, expired or malformed."""
        if not FERNET_TOKEN.fullmatch(sealed):
            return None
        try:
            data = self._fernet.decrypt_at_time(sealed.encode("ascii"), max_age, int(self._clock()))
            if data[:1] == b"z":
                inflate = zlib.decompressobj(-15)
                data = inflate.decompress(data[1:], MAX_PLAINTEXT_BYTES)
                if inflate.unconsumed_tail or not inflate.eof:
                    return None
            payload = json.loads(data)
        except (InvalidToken, UnicodeError, ValueError, zlib.error):
            return None
        return payload if isinstance(payload, dict) else None
