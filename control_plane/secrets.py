"""Sealing destination secrets (header values) so that a database dump alone does not reveal them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken

from phoenix_common.settings import SettingsError

log = structlog.get_logger("phoenix.secrets")

KEY_FILE = "secrets.key"


class SecretError(Exception):
    """A sealed value that this API's key does not open (another key, or a damaged value)."""


class Sealer:
    """Encrypts and decrypts small JSON values with one Fernet key (AES-128-CBC and HMAC-SHA256)."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def seal(self, value: object) -> str:
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode()).decode("ascii")

    def unseal(self, token: str) -> object:
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeEncodeError):
            raise SecretError(
                "a sealed secret does not open with this API's secrets_key (was the key changed?)"
            ) from None


def load_key(configured: str | None, state_dir: Path) -> bytes:
    """The configured key; else the one in the state directory, made (mode 0600) on first start."""
    if configured:
        key = configured.strip().encode()
        try:
            Fernet(key)
        except ValueError:
            raise SettingsError(
                "secrets_key must be 32 bytes in urlsafe base64 (make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
        return key
    path = state_dir / KEY_FILE
    try:
        key = path.read_bytes().strip()
        Fernet(key)
        log.info(
            "secrets_key_from_state_dir",
            path=str(path),
            hint="set secrets_key to share one key across replicas",
        )
        return key
    except FileNotFoundError:
        pass
    except ValueError:
        raise SettingsError(f"{path} does not hold a Fernet key; restore it or set secrets_key") from None
    state_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    log.warning(
        "secrets_key_generated",
        path=str(path),
        hint="no secrets_key is configured: destination headers are encrypted with this new key; back it up, "
        "and give every API replica the same key (PHOENIX_SECRETS_KEY)",
    )
    return key
