"""Each service's OpenAPI document lists exactly the routes its app serves, and the app serves it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.support import ROOT

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
DOC_ROUTE = "/api/v1/openapi.json"


def _normalise(path: str) -> str:
    """`/a/{id}` and `/a/{name:.+}` both become `/a/{}`: parameter names and patterns are not on the wire."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, without the HEAD twins aiohttp adds to GET routes."""
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        out.add((route.method, _normalise(route.resource.canonical)))
    return out


def document_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), _normalise(path))
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def load(service: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / service / "openapi.yaml").read_text())
    return document


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def assert_same_routes(app: web.Application, document: dict[str, Any], service: str) -> None:
    served, documented = app_routes(app), document_routes(document)
    undocumented = sorted(served - documented)
    unserved = sorted(documented - served)
    assert not undocumented and not unserved, (
        f"{service}/openapi.yaml and the app disagree:\n"
        f"  served but not documented: {undocumented}\n  documented but not served: {unserved}"
    )


@pytest.mark.parametrize("service", ["control_plane", "config_generator"])
def test_document_is_consistent(service: str) -> None:
    """OpenAPI 3.1, $refs resolve, unique operation ids, path parameters declared, errors are problems."""
    document = load(service)
    assert document["openapi"].startswith("3.1")
    for ref in _refs(document):
        _resolve(document, ref)
    operation_ids: list[str] = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in (m for m in item if m in METHODS):
            operation = item[method]
            operation_ids.append(operation["operationId"])
            params = [
                _resolve(document, p["$ref"]) if "$ref" in p else p
                for p in [*shared, *operation.get("parameters", [])]
            ]
            declared = {p["name"] for p in params if p["in"] == "path"}
            in_path = set(re.findall(r"\{([^}:]+)", path))
            assert declared == in_path, f"{method.upper()} {path}: path parameters"
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = _resolve(document, response["$ref"])
                if int(status) >= 400:
                    assert list(response.get("content", {})) == ["application/problem+json"], (
                        f"{method.upper()} {path} {status} must be a problem+json response"
                    )
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


async def _served_document(app: web.Application) -> dict[str, Any]:
    async with TestClient(TestServer(app)) as client:
        response = await client.get(DOC_ROUTE)
        assert response.status == 200, (
            f"{DOC_ROUTE} answered {response.status}: the app must add_routes(openapi.routes)"
        )
        assert response.content_type == "application/json"
        document: dict[str, Any] = await response.json()
        return document


async def test_control_plane_routes_match_its_document(database_url: str) -> None:
    """The control plane, started on a real database, serves exactly what control_plane/openapi.yaml lists."""
    from control_plane.app import create_app
    from control_plane.settings import Settings

    app = create_app(Settings(), database_url)
    document = load("control_plane")
    assert_same_routes(app, document, "control_plane")
    assert await _served_document(app) == document


async def test_config_generator_routes_match_its_document(tmp_path: Path) -> None:
    """The config generator serves exactly what config_generator/openapi.yaml lists."""
    from config_generator.app import create_app
    from config_generator.settings import Settings

    app = create_app(Settings())
    document = load("config_generator")
    assert_same_routes(app, document, "config_generator")
    assert await _served_document(app) == document
