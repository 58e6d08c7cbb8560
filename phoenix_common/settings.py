"""Settings from defaults, then a YAML file, then PHOENIX_* environment variables, validated once."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the field path."""


def parse_duration(value: Any, field: str) -> float:
    """Seconds from a number or a string such as '30s', '5m', '250ms', '30d'."""
    if isinstance(value, bool):
        raise SettingsError(f"{field} must be a duration such as 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise SettingsError(f"{field} must be a duration such as 30s or 5m, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise SettingsError(f"{field} must not be negative")
    return seconds


def _coerce(value: Any, hint: Any, field: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], field)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{field} must be a mapping")
        return build(hint, value, prefix=f"{field}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{field} must be true or false, got {value!r}")
    if hint is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{field} must be an integer, got {value!r}") from None
    if hint is float:
        return parse_duration(value, field) if isinstance(value, str) else _number(value, field)
    if hint is str:
        if isinstance(value, Mapping | list):
            raise SettingsError(f"{field} must be a string")
        return str(value)
    if hint is Path:
        return Path(str(value)).expanduser()
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value) or {}
        if not isinstance(value, Mapping):
            raise SettingsError(f"{field} must be a mapping")
        return {str(k): str(v) for k, v in value.items()}
    if origin is list or origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{field} must be a list")
        return tuple(str(v) for v in value)
    return value


def _number(value: Any, field: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{field} must be a number, got {value!r}") from None


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, naming the field path in every error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingsError(f"{prefix}{unknown[0]} is not a known setting")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def _env_overrides(cls: type, env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = f"{prefix}{f.name.upper()}"
        if dataclasses.is_dataclass(hint):
            nested = _env_overrides(hint, env, f"{key}__")  # type: ignore[arg-type]
            if nested:
                out[f.name] = nested
        elif key in env:
            out[f.name] = env[key]
    return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load(
    cls: type[T],
    *,
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    env_prefix: str = "PHOENIX_",
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Defaults, then the YAML file at `path` (if given), then environment, then explicit overrides.

    Nested sections are addressed in the environment with a double underscore:
    PHOENIX_COLLECTOR__BINARY sets collector.binary.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except FileNotFoundError:
            raise SettingsError(f"config file {file} does not exist") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {file} is not valid YAML: {exc}".splitlines()[0]) from None
        if not isinstance(loaded, Mapping):
            raise SettingsError(f"config file {file} must hold a mapping of settings")
        values = _deep_merge(values, loaded)
    values = _deep_merge(values, _env_overrides(cls, os.environ if env is None else env, env_prefix))
    if overrides:
        values = _deep_merge(values, {k: v for k, v in overrides.items() if v is not None})
    return build(cls, values)


def exit_on_error(exc: SettingsError) -> typing.NoReturn:
    """Print the one-line settings error and exit non-zero, without a traceback."""
    print(f"configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2)


# The shortest API token a service takes: guessing one must not be a matter of a dictionary.
MIN_TOKEN_CHARS = 16
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\.?\Z")


def check_allowed_hosts(hosts: tuple[str, ...]) -> None:
    """allowed_hosts: host names or IP addresses, without scheme or port."""
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        if not _HOST_NAME.match(host):
            raise SettingsError(
                f"allowed_hosts must list host names or addresses such as phoenix.example.com, got {host!r}"
            )


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine: a loopback address (127.0.0.0/8,
    ::1, in any spelling the address parser takes) or `localhost`. A name is not resolved: a host name
    that merely starts with "127." (127.evil.example) is no address and is not loopback."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
