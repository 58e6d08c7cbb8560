"""What a collector config from the control plane may hold before the agent runs it.

The agent applies configs it is sent, as the collector's user. A compromised or impersonated control
plane or generator could otherwise make the collector read any file (`${file:/etc/shadow}`), read the
environment (`${env:...}`), or write files (the file exporter). So a config may only use the component
types Phoenix renders, and `${...}` only as `${file:PATH}` with PATH under the agent's own state
directory (keep lists, sealed secret side files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
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
    # The text and every string the YAML decodes to: an escape ("\x24{...}") hides nothing.
    for value in (text, *_strings(config)):
        for match in _EXPANSION.finditer(value):
            scheme, _, target = match.group(1).partition(":")
            if scheme != "file":
                raise PolicyError(
                    f"{where}: ${{{scheme}:...}} is not allowed; only ${{file:...}} under the agent's state"
                )
            if not _inside(target, resolved):
                raise PolicyError(f"{where}: ${{file:{target[:120]}}} is outside the agent's state directory")
    # What else writes files: the collector's own log outputs, and file_storage's directory.
    service = config.get("service")
    telemetry = service.get("telemetry") if isinstance(service, Mapping) else None
    logs = telemetry.get("logs") if isinstance(telemetry, Mapping) else None
    for key in ("output_paths", "error_output_paths"):
        outputs = logs.get(key) if isinstance(logs, Mapping) else None
        for out in outputs if isinstance(outputs, list) else []:
            if out not in ("stdout", "stderr"):
                raise PolicyError(f"{where}: service.telemetry.logs.{key} may name stdout or stderr only")
    for name, spec in (config.get("extensions") or {}).items():
        directory = spec.get("directory") if isinstance(spec, Mapping) else None
        if (
            str(name).startswith("file_storage")
            and directory is not None
            and not _inside(str(directory), resolved)
        ):
            raise PolicyError(f"{where}: extension {name!r} stores outside the agent's state directory")


def _inside(target: str, roots: list[Path]) -> bool:
    path = Path(target)
    return path.is_absolute() and any(path.resolve().is_relative_to(root) for root in roots)


def _strings(value: Any) -> Iterator[str]:
    """Every string key and value in a parsed config."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            for key, child in item.items():
                stack.append(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
