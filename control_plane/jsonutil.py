"""JSON responses for rows holding datetimes, UUIDs and decimals."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from functools import partial
from typing import Any

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


dumps = partial(json.dumps, default=_default)
# What is stored as jsonb: no NaN or Infinity (ValueError instead), as PostgreSQL refuses them.
strict_dumps = partial(json.dumps, default=_default, allow_nan=False)


def respond(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)
