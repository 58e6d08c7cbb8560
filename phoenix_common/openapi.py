"""GET /api/v1/openapi.json for a service: its openapi.yaml (beside its package) served as JSON."""

from __future__ import annotations

import functools
import json
from importlib import resources

import yaml
from aiohttp import web


@functools.cache
def document_json(package: str) -> str:
    """The package's OpenAPI document as JSON text, read and converted once per process."""
    text = resources.files(package).joinpath("openapi.yaml").read_text(encoding="utf-8")
    return json.dumps(yaml.safe_load(text), separators=(",", ":"))


def openapi_routes(package: str) -> web.RouteTableDef:
    """A route table serving `package`'s OpenAPI document."""
    routes = web.RouteTableDef()

    @routes.get("/api/v1/openapi.json")
    async def openapi_document(request: web.Request) -> web.Response:
        return web.Response(text=document_json(package), content_type="application/json")

    return routes
