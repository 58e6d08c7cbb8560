"""Every resource shared through the application, one typed key each."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from config_generator.catalog import Template
from config_generator.control_plane import ControlPlaneClient
from config_generator.metrics import GeneratorMetrics
from config_generator.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CATALOG: web.AppKey[dict[str, Template]] = web.AppKey("catalog")
HTTP = web.AppKey("http", aiohttp.ClientSession)
CONTROL_PLANE = web.AppKey("control_plane", ControlPlaneClient)
METRICS = web.AppKey("metrics", GeneratorMetrics)
