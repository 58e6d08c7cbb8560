"""The keep-list file: which process names a selection pipeline keeps at full detail.

The collector config of every selection template embeds the file with the collector's file
config provider, inside an OTTL condition:

    not ContainsValue(${file:/var/lib/phoenix-agent/keep/candidate.yaml}, resource.attributes[...])

so the file holds exactly one OTTL list literal of string literals. The text is also a JSON array
(and so YAML), which `parse_keep_file` reads back. Every name goes through `validate_process_name`
and is written as a JSON string literal whose escapes (`\\"`, `\\\\`, `\\uXXXX`) OTTL reads the same way;
`$` is written as `\\u0024` so that the collector's `${...}` config expansion never sees a name,
which keeps a process called `${env:SECRET}` from reading the environment.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable

MAX_NAME_LENGTH = 256
MAX_NAMES = 2000

# Characters a process name may never hold: they would end a line, reorder text or could not be
# encoded; none occurs in a real executable name.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def validate_process_name(name: object) -> str:
    """Return `name` if it can be a kept process name, else raise ValueError saying why."""
    if not isinstance(name, str):
        raise ValueError(f"process name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("process name must not be empty or blank")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"process name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    for index, char in enumerate(name):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise ValueError(
                f"process name {name[:40]!r} holds control character U+{ord(char):04X} at position {index}"
            )
    return name


def ottl_string(value: str) -> str:
    """`value` as an OTTL string literal that is also JSON, with `$` hidden from config expansion."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\u0024")


def ottl_list(names: Iterable[str]) -> str:
    """Validated, de-duplicated `names` as one OTTL list literal, sorted for a stable hash."""
    unique = sorted({validate_process_name(n) for n in names})
    if len(unique) > MAX_NAMES:
        raise ValueError(f"keep-list holds {len(unique)} names; the limit is {MAX_NAMES}")
    return "[" + ", ".join(ottl_string(n) for n in unique) + "]"


def render_keep_file(names: Iterable[str]) -> str:
    """The exact text to write to a keep-list file; raises ValueError on an invalid name."""
    return ottl_list(names)


def parse_keep_file(text: str) -> list[str]:
    """The names a keep-list file holds; raises ValueError if it is not one."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"keep-list file is not a JSON array of names: {exc}") from None
    if not isinstance(loaded, list):
        raise ValueError("keep-list file must hold a JSON array of names")
    return [validate_process_name(n) for n in loaded]
