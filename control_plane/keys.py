"""Every resource shared through the application, one typed key each."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from control_plane.db import Database
from control_plane.dispatch import Dispatcher
from control_plane.listener import EventHub, Listener
from control_plane.presence import Presence
from control_plane.queue import ReportBatcher, TaskQueue
from control_plane.services.agents import AgentService
from control_plane.services.deployments import DeploymentService
from control_plane.services.destinations import DestinationService
from control_plane.services.tokens import AgentTokens
from control_plane.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DATABASE_URL = web.AppKey("database_url", str)
DB = web.AppKey("db", Database)
QUEUE = web.AppKey("queue", TaskQueue)
REPORTS = web.AppKey("reports", ReportBatcher)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
PRESENCE = web.AppKey("presence", Presence)
AGENTS = web.AppKey("agents", AgentService)
DEPLOYMENTS = web.AppKey("deployments", DeploymentService)
DESTINATIONS = web.AppKey("destinations", DestinationService)
TOKENS = web.AppKey("agent_tokens", AgentTokens)
HUB = web.AppKey("hub", EventHub)
LISTENER = web.AppKey("listener", Listener)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REGISTRY = web.AppKey("registry", CollectorRegistry)
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])
