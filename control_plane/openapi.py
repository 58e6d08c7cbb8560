"""GET /api/v1/openapi.json: this service's OpenAPI document (openapi.yaml beside this module) as JSON."""

from __future__ import annotations

import functools
import json
from importlib import resources

import yaml
from aiohttp import web

routes = web.RouteTableDef()


@functools.cache
def document_json() -> str:
    """The OpenAPI document as JSON text, read and converted once per process."""
    text = resources.files("control_plane").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return json.dumps(yaml.safe_load(text), separators=(",", ":"))


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every route of the control plane."""
    return web.Response(text=document_json(), content_type="application/json")
