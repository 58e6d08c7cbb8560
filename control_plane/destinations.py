"""Destination endpoints: create, list, show, replace, delete (docs/destinations.md)."""

from __future__ import annotations

from aiohttp import web

from control_plane import destination_spec, keys
from control_plane.jsonutil import respond
from phoenix_common.problems import json_body

routes = web.RouteTableDef()


@routes.post("/api/v1/destinations")
async def create_destination(request: web.Request) -> web.Response:
    destination = destination_spec.parse(await json_body(request))
    return respond(await request.app[keys.DESTINATIONS].create(destination), status=201)


@routes.get("/api/v1/destinations")
async def list_destinations(request: web.Request) -> web.Response:
    return respond({"destinations": await request.app[keys.DESTINATIONS].list_all()})


@routes.get("/api/v1/destinations/{name}")
async def get_destination(request: web.Request) -> web.Response:
    name = destination_spec.check_name(request.match_info["name"])
    return respond(await request.app[keys.DESTINATIONS].view(name))


@routes.put("/api/v1/destinations/{name}")
async def replace_destination(request: web.Request) -> web.Response:
    name = destination_spec.check_name(request.match_info["name"])
    destination = destination_spec.parse(await json_body(request), name=name)
    return respond(await request.app[keys.DESTINATIONS].replace(destination))


@routes.delete("/api/v1/destinations/{name}")
async def delete_destination(request: web.Request) -> web.Response:
    name = destination_spec.check_name(request.match_info["name"])
    await request.app[keys.DESTINATIONS].delete(name)
    return web.Response(status=204)
