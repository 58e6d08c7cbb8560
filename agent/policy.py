"""What a collector config from the control plane may hold before the agent runs it.

The agent applies configs it is sent, as the collector's user. A compromised or impersonated control
plane or generator could otherwise make the collector read any file (`${file:/etc/shadow}`), read the
environment (`${env:...}`), or write files (the file exporter). So a config may only use the component
types Phoenix renders, and `${...}` only as `${file:PATH}` with PATH under the agent's own state
directory (keep lists, sealed secret side files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Component types (the part of an id before "/") of every template and destination Phoenix renders.
ALLOWED = {
    "receivers": frozenset({"hostmetrics", "otlp"}),
    "processors": frozenset(
        {
            "memory_limiter",
            "batch",
            "filter",
            "transform",
            "resource",
            "attributes",
            "groupbyattrs",
            "metricstransform",
            "cumulativetodelta",
            "deltatocumulative",
            "phoenixkeeplist",
        }
    ),
    "exporters": frozenset({"prometheus", "otlp", "otlphttp", "prometheusremotewrite", "debug"}),
    "extensions": frozenset({"health_check", "file_storage", "bearertokenauth"}),
    "connectors": frozenset(),
}
_EXPANSION = re.compile(r"\$\{([^}]*)\}")


class PolicyError(ValueError):
    """A config the agent will not run; the message names what is refused."""


def check(text: str, config: Mapping[str, Any], roots: Iterable[Path], where: str = "config") -> None:
    """Raise PolicyError unless `config` (parsed from `text`) keeps to what Phoenix renders."""
    for section, allowed in ALLOWED.items():
        components = config.get(section) or {}
        if not isinstance(components, Mapping):
            raise PolicyError(f"{where}: '{section}' must be a mapping")
        for name in components:
            kind = str(name).split("/", 1)[0]
            if kind not in allowed:
                raise PolicyError(
                    f"{where}: {section[:-1]} type {kind!r} is not one Phoenix renders "
                    f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
                )
    resolved = [root.resolve() for root in roots]
    for match in _EXPANSION.finditer(text):
        scheme, _, target = match.group(1).partition(":")
        if scheme != "file":
            raise PolicyError(
                f"{where}: ${{{scheme}:...}} is not allowed; only ${{file:...}} under the agent's state"
            )
        path = Path(target)
        if not path.is_absolute() or not any(path.resolve().is_relative_to(root) for root in resolved):
            raise PolicyError(f"{where}: ${{file:{target[:120]}}} is outside the agent's state directory")
