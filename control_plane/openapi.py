"""GET /api/v1/openapi.json: the OpenAPI document in openapi.yaml beside this module."""

from phoenix_common.openapi import document_json, openapi_routes

routes = openapi_routes("control_plane")


def document() -> str:
    """This service's OpenAPI document as JSON text."""
    return document_json("control_plane")
