"""The names the API takes, checked in one place before they go anywhere.

Ids and names end up in SQL parameters, Prometheus labels, URLs to the config generator and, for
templates, in collector configs the generator renders (which expand `${...}`). Identifiers are held to
small character sets with no `$`, `{`, `/` or `%` at all, so that no name can traverse a path or
inject an expansion; free-text names (an experiment's) may not hold control characters or the opening of
a template or config expansion. Patterns end in `\\Z`, not `$`, which would let a trailing newline in.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from phoenix_common.problems import Problem
from phoenix_common.wire import DNS_LABEL

HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}\Z")
NAMESPACE = DNS_LABEL
TEMPLATE = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")
DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}\Z")
# Control, format (bidi overrides, zero-width), surrogate, private-use and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_EXPANSIONS = ("${", "{{", "{%", "$(")


def check_host_id(value: str, what: str, field: str) -> str:
    """A host id (`what` says where it came from, e.g. "header X-Agent-Host-ID"), or a 400 naming it."""
    if not HOST_ID.match(value):
        raise Problem(
            f"{what} must be 1-253 letters, digits, '.', '_', ':' or '-', starting with a letter or digit, "
            f"got {value[:64]!r}",
            field=field,
        )
    return value


def check_namespace(value: str, name: str = "namespace") -> str:
    if not NAMESPACE.match(value):
        raise Problem(
            f"field '{name}' must be a DNS label (lowercase letters, digits, '-'), got {value!r}", field=name
        )
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def check_template(value: str, name: str = "template") -> str:
    """A template name as the generator's catalog spells them, or a 400 naming the field."""
    if not TEMPLATE.match(value):
        raise Problem(
            f"field '{name}' must be a template name (lowercase letters, digits and '-', starting with a "
            f"letter, at most 63), got {value[:64]!r}",
            field=name,
        )
    return value


def check_display_name(value: str, name: str = "name", limit: int = 200) -> str:
    """Free text shown to people: no control characters and no `${`, `{{`, `{%` or `$(`."""
    if not 0 < len(value) <= limit or not value.strip():
        raise Problem(f"field '{name}' must be 1-{limit} characters, not blank", field=name)
    for index, char in enumerate(value):
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            raise Problem(
                f"field '{name}' holds control character U+{ord(char):04X} at position {index}", field=name
            )
    for opening in _EXPANSIONS:
        if opening in value:
            raise Problem(
                f"field '{name}' must not hold {opening!r}: names are never expanded, so this is refused",
                field=name,
            )
    return value
