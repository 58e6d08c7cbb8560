"""Merging rendered collector configs of several variants into one (the generator and the agent share it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MergeConflict(ValueError):
    """Two configs set the same key to different values; `path` names the key."""

    def __init__(self, path: str):
        super().__init__(f"configs disagree at {path}")
        self.path = path


def merge_configs(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge config maps; a key set twice must hold equal values (receiver, extension, telemetry)."""
    merged: dict[str, Any] = {}
    for config in configs:
        merged = _merge(merged, config, "")
    return merged


# Lists that hold names of components both configs may start: merged as a union, in order.
UNION_LISTS = frozenset({"service.extensions"})


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any], path: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in out:
            out[key] = value
        elif where in UNION_LISTS and isinstance(out[key], list) and isinstance(value, list):
            out[key] = out[key] + [item for item in value if item not in out[key]]
        elif isinstance(out[key], Mapping) and isinstance(value, Mapping):
            out[key] = _merge(out[key], value, where)
        elif out[key] != value:
            raise MergeConflict(where)
    return out
