"""Plain-text output: aligned tables, key/value blocks and number formats, no dependencies."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any


class Right(str):
    """A preformatted cell that aligns right, like a number."""

    __slots__ = ()


def _cell(value: Any) -> tuple[str, bool]:
    if value is None:
        return "-", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return num(value), True
    return str(value), isinstance(value, Right)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """Columns aligned to their widest cell; numbers align right."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    right = [
        any(row[i][1] for row in cells) and all(row[i][1] or row[i][0] == "-" for row in cells)
        for i in range(len(headers))
    ]
    lines = []
    for row in [[(h, False) for h in headers], *cells]:
        parts = [
            text.rjust(widths[i]) if right[i] else text.ljust(widths[i]) for i, (text, _) in enumerate(row)
        ]
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)


def kv(pairs: Iterable[tuple[str, Any]], indent: str = "") -> str:
    """`key   value` lines with the values aligned."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{indent}{k.ljust(width)}  {_cell(v)[0]}".rstrip() for k, v in pairs)


def num(value: float | int | None, digits: int = 2) -> str:
    """A number with thousands separators; integers without decimals."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def pct(value: float | None, digits: int = 1) -> Right:
    return Right("-" if value is None else f"{value:.{digits}f} %")


def money(value: float | None) -> Right:
    return Right("-" if value is None else f"{value:,.2f}")


def size(value: float | None) -> Right:
    """Bytes in binary units."""
    if value is None:
        return Right("-")
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024 or unit == "GiB":
            return Right(f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}")
        amount /= 1024
    return Right(f"{amount:.1f} GiB")


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def when(value: Any) -> str:
    """An ISO timestamp as local time to the second."""
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def clock(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%H:%M:%S") if parsed else "--:--:--"


def age(value: Any, now: dt.datetime | None = None) -> str:
    """How long ago, e.g. '4s ago', '3m ago'."""
    parsed = parse_time(value)
    if parsed is None:
        return "-"
    seconds = max(0.0, ((now or dt.datetime.now(dt.UTC)) - parsed).total_seconds())
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit} ago"
    return f"{int(seconds)}s ago"


def seconds(value: float | None) -> str:
    """A duration as 90s, 10m, 1h30m."""
    if value is None:
        return "-"
    total = int(value)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def short(text: Any, width: int = 60) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def short_hash(value: Any) -> str:
    if not value:
        return "-"
    text = str(value)
    algo, _, digest = text.rpartition(":")
    return f"{algo}:{digest[:12]}" if algo else text[:12]


def mapping(values: Any) -> str:
    if not values:
        return "-"
    if isinstance(values, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
    return json.dumps(values)


def listing(values: Any) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
