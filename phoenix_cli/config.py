"""Where the CLI finds the services: flags, then environment, then the config file, then defaults."""

from __future__ import annotations

import stat
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phoenix_cli.errors import UsageError

DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_GENERATOR_URL = "http://127.0.0.1:8082"
FILE_KEYS = ("api_url", "token", "generator_url")
ENV = {"api_url": "PHOENIX_API_URL", "token": "PHOENIX_API_TOKEN", "generator_url": "PHOENIX_GENERATOR_URL"}


@dataclass(frozen=True)
class CliSettings:
    """The resolved settings; `token` is never printed."""

    api_url: str
    token: str | None
    generator_url: str
    timeout: float

    def __repr__(self) -> str:
        return (
            f"CliSettings(api_url={self.api_url!r}, token={'***' if self.token else None}, "
            f"generator_url={self.generator_url!r}, timeout={self.timeout!r})"
        )


def default_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "phoenix" / "cli.yaml"


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    return _parse_file(path, text)


def _parse_file(path: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must be a mapping of {', '.join(FILE_KEYS)}")
    for key, value in data.items():
        if key not in FILE_KEYS:
            raise UsageError(f"config file {path}: unknown key {key!r} (known: {', '.join(FILE_KEYS)})")
        if value is not None and not isinstance(value, str):
            raise UsageError(f"config file {path}: {key} must be a string")
    if data.get("token"):
        _warn_if_readable(path)
    return {k: v for k, v in data.items() if v}


def _warn_if_readable(path: Path) -> None:
    """A token in a file others can read is a leak waiting to happen; say so (without the token)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(
            f"phoenix: warning: {path} holds a token and is readable by other users; run 'chmod 600 {path}'",
            file=sys.stderr,
        )


def check_url(value: str, name: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{name} must be an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise UsageError(f"{name} must not have a query or fragment, got {value!r}")
    return value.rstrip("/")


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str]) -> CliSettings:
    """Settings from flags > environment > config file > defaults."""
    explicit = flags.get("cli_config")
    path = Path(explicit).expanduser() if explicit else default_config_path(environ)
    from_file = _read_file(path, explicit=bool(explicit))
    values: dict[str, Any] = {}
    for key in FILE_KEYS:
        values[key] = flags.get(key) or environ.get(ENV[key]) or from_file.get(key)
    timeout = flags.get("timeout")
    if timeout is None:
        timeout = 30.0
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    return CliSettings(
        api_url=check_url(values["api_url"] or DEFAULT_API_URL, "the API URL (--api-url, PHOENIX_API_URL)"),
        token=values["token"] or None,
        generator_url=check_url(
            values["generator_url"] or DEFAULT_GENERATOR_URL,
            "the generator URL (--generator-url, PHOENIX_GENERATOR_URL)",
        ),
        timeout=float(timeout),
    )
