"""A destination as the API takes it: every field checked, each error naming it (no I/O)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from phoenix_common.problems import Problem
from phoenix_common.settings import SettingsError, parse_duration
from phoenix_common.wire import DNS_LABEL

TYPES = ("otlp_grpc", "otlp_http", "prometheus_remote_write")
COMPRESSIONS = ("gzip", "zstd", "snappy", "none")
NAME = DNS_LABEL
# RFC 9110 token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}\Z")
# host:port for gRPC (a DNS name, IPv4, or a bracketed IPv6 address).
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252})):(\d{1,5})\Z")
# Headers the remote write protocol fixes; the exporter refuses to change them.
FIXED_HEADERS = frozenset(
    {"content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"}
)
MASK = "********"
MAX_HEADERS = 32
MAX_HEADER_VALUE = 8192
MAX_PEM = 65_536
TIMEOUT_RANGE = (1.0, 300.0)
FIELDS = frozenset({"name", "type", "endpoint", "headers", "tls", "compression", "timeout"})
TLS_FIELDS = frozenset({"insecure", "insecure_skip_verify", "ca_pem"})


@dataclass(frozen=True)
class Destination:
    """A checked destination; `headers` are the plain values (secrets: never logged or returned)."""

    name: str
    type: str
    endpoint: str
    headers: dict[str, str] | None  # None: not given (a PUT keeps the stored ones)
    tls: dict[str, Any] = field(default_factory=dict)
    compression: str = "gzip"
    timeout_seconds: float = 10.0


def _problem(name: str, text: str) -> Problem:
    return Problem(f"field '{name}' {text}", field=name)


def check_name(value: Any, where: str = "name") -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise _problem(
            where, "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        )
    return value


def _no_expansion(value: str, where: str) -> None:
    if "${" in value:
        raise _problem(where, "must not hold '${': the collector would expand it")


def _control(char: str) -> bool:
    """C0 and C1 control characters and DEL (CR and LF among them), and lone surrogates (no UTF-8)."""
    return unicodedata.category(char) in ("Cc", "Cs")


def _printable(value: str, where: str) -> None:
    for index, char in enumerate(value):
        if _control(char):
            raise _problem(where, f"holds control character U+{ord(char):04X} at position {index}")


def check_endpoint(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise _problem("endpoint", "must be a non-empty string of at most 2048 characters")
    _printable(value, "endpoint")
    _no_expansion(value, "endpoint")
    if kind == "otlp_grpc" and HOST_PORT.match(value):
        if not 0 < int(HOST_PORT.match(value).group(3)) < 65536:  # type: ignore[union-attr]
            raise _problem("endpoint", f"has a port outside 1-65535: {value[:80]!r}")
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        grpc = " or host:port" if kind == "otlp_grpc" else ""
        raise _problem("endpoint", f"must be an http(s) URL{grpc}, got {value[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise _problem(
            "endpoint",
            "must not hold credentials (user:password@); put them in headers, which are kept secret",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _problem("endpoint", f"has an invalid port: {value[:80]!r}") from None
    return value


def check_headers(kind: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _problem("headers", "must be an object of header names to values")
    if len(value) > MAX_HEADERS:
        raise _problem("headers", f"may hold at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, text in value.items():
        if not HEADER_NAME.match(name):
            raise Problem(
                f"header name {name[:64]!r} must be an HTTP token (letters, digits and !#$%&'*+.^_`|~-)",
                field="headers",
            )
        if name.lower() in seen:
            raise Problem(f"header {name!r} is given twice", field="headers")
        seen.add(name.lower())
        if kind == "prometheus_remote_write" and name.lower() in FIXED_HEADERS:
            raise Problem(f"header {name!r} is fixed by the remote write protocol", field="headers")
        where = f"headers.{name}"
        if not isinstance(text, str) or not 0 < len(text) <= MAX_HEADER_VALUE:
            raise _problem(where, f"must be a string of 1-{MAX_HEADER_VALUE} characters")
        # The value is a secret: the messages name its position, never its text.
        for index, char in enumerate(text):
            if _control(char):
                raise _problem(
                    where, f"holds control character U+{ord(char):04X} (CR, LF, ...) at position {index}"
                )
        _no_expansion(text, where)
    return dict(value)


def check_tls(kind: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _problem("tls", "must be an object")
    unknown = sorted(set(value) - TLS_FIELDS)
    if unknown:
        raise _problem(f"tls.{unknown[0][:40]}", f"is not known; allowed: {', '.join(sorted(TLS_FIELDS))}")
    out: dict[str, Any] = {}
    for flag in ("insecure", "insecure_skip_verify"):
        if flag in value:
            if not isinstance(value[flag], bool):
                raise _problem(f"tls.{flag}", "must be a boolean")
            out[flag] = value[flag]
    if out.get("insecure") and kind != "otlp_grpc":
        raise _problem("tls.insecure", "applies to otlp_grpc only; use an http:// endpoint for plain text")
    if value.get("ca_pem") is not None:
        pem = value["ca_pem"]
        if not isinstance(pem, str) or not pem.strip() or len(pem) > MAX_PEM:
            raise _problem("tls.ca_pem", f"must be PEM text of at most {MAX_PEM} characters")
        try:
            certificates = x509.load_pem_x509_certificates(pem.encode())
        except ValueError as exc:
            raise _problem("tls.ca_pem", f"does not parse as PEM certificates ({str(exc)[:120]})") from None
        if not certificates:
            raise _problem("tls.ca_pem", "holds no certificate")
        _no_expansion(pem, "tls.ca_pem")
        out["ca_pem"] = pem
    return out


def parse(body: dict[str, Any], name: str | None = None) -> Destination:
    """The destination of a POST body (`name` None) or of a PUT to `name`."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _problem(unknown[0][:64], f"is not known; allowed: {', '.join(sorted(FIELDS))}")
    if name is None:
        name = check_name(body.get("name"))
    elif body.get("name") not in (None, name):
        raise _problem("name", f"must be {name!r} (the name in the path) or left out")
    kind = body.get("type")
    if kind not in TYPES:
        raise _problem("type", f"must be one of {', '.join(TYPES)}, got {str(kind)[:40]!r}")
    endpoint = check_endpoint(kind, body.get("endpoint"))
    headers = None if body.get("headers") is None else check_headers(kind, body["headers"])
    tls = check_tls(kind, body.get("tls") or {})
    default = "snappy" if kind == "prometheus_remote_write" else "gzip"
    compression = body.get("compression") or default
    if compression not in COMPRESSIONS:
        raise _problem(
            "compression", f"must be one of {', '.join(COMPRESSIONS)}, got {str(compression)[:40]!r}"
        )
    if kind == "prometheus_remote_write" and compression != "snappy":
        raise _problem("compression", "must be snappy for prometheus_remote_write (the protocol's)")
    try:
        timeout = parse_duration(body.get("timeout", 10.0), "timeout")
    except (SettingsError, OverflowError) as exc:
        raise _problem("timeout", f"must be a duration such as 10s ({exc})") from None
    low, high = TIMEOUT_RANGE
    if not low <= timeout <= high:
        raise _problem("timeout", f"must be between {low:g}s and {high:g}s, got {timeout:g}s")
    return Destination(name, kind, endpoint, headers, tls, compression, timeout)


def masked(header_names: list[str]) -> dict[str, str]:
    """How header values read back: their names, each value masked."""
    return {name: MASK for name in header_names}
