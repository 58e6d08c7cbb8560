"""structlog set-up shared by the services: JSON lines unless stdout is a terminal."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = (
    "token",
    "password",
    "passwd",
    "authorization",
    "secret",
    "cookie",
    "api_key",
    "apikey",
    "credential",
    "private_key",
    # The files that carry destination header values to the collector.
    "secret_files",
)
REDACTED = "[redacted]"
# Secrets inside free text: a URL's password (postgresql://user:pw@host), a bearer token, a token in a
# query string, and the tokens Phoenix issues (phx_...).
_TEXT_SECRETS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\g<1>{REDACTED}@"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s,;\"']+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)([?&](?:token|api_key|password|secret)=)[^&\s\"']+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"\bphx_[A-Za-z0-9_-]{8,}"), f"phx_{REDACTED}"),
)


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and any(s in key.lower() for s in _SECRET_KEYS)


def scrub(text: str) -> str:
    """`text` with any secret it holds replaced (URL passwords, bearer tokens, Phoenix tokens)."""
    for pattern, replacement in _TEXT_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secrets redacted: by key in mappings (e.g. headers), by shape in strings."""
    if isinstance(value, str):
        return scrub(value)
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _secret_key(k) else _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Keep secrets out of logs whatever a caller binds."""
    for key in list(event):
        event[key] = REDACTED if _secret_key(key) and key != "event" else _clean(event[key])
    return event


class _ScrubFilter(logging.Filter):
    """The same for stdlib log records (aiohttp's own errors): message and traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    use_json = (not sys.stdout.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
