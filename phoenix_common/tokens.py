"""Bearer tokens: read from a request, compared in constant time, hashed for storage."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

# Tokens Phoenix makes carry this prefix, so that a secret scanner (or a reader of a leaked log) knows them.
ISSUED_PREFIX = "phx_"


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def _bytes(value: str) -> bytes:
    # Header values arrive decoded with surrogateescape; undecodable bytes must compare, not raise.
    return value.encode("utf-8", "surrogateescape")


def same_token(presented: str, expected: str) -> bool:
    """Whether two tokens are equal, in time independent of where they differ."""
    return hmac.compare_digest(_bytes(presented), _bytes(expected))


def token_hash(token: str) -> str:
    """What is stored instead of a token: its sha256, hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(_bytes(token)).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return ISSUED_PREFIX + secrets.token_urlsafe(32)
