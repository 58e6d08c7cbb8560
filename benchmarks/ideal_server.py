"""The ideal peer of benchmarks/fleet.py: an aiohttp server that speaks the agent API's fleet subset and
keeps everything in memory, so that fleet.py's ratio says what Phoenix's database path and its own code
cost on top of holding the same long polls.

It holds each host's long poll on a future and answers it the moment a deployment gives the host a task
(no database, no claim, no lease, no event, no NOTIFY); the task carries the same rendered collector
config Phoenix sends (process-baseline-v1, rendered with the config generator's own code). It serves:
  POST /api/v1/agent/heartbeat         registers the host in its namespace
  GET  /api/v1/agent/tasks?wait=S      the host's tasks, held up to S seconds when it has none
  POST /api/v1/agent/tasks/status      reports (completed ones are counted)
  POST /api/v1/pipeline-deployments    one task per host of the namespace, every held poll woken
  GET  /ideal/deployments/{id}         {"completed": N}
  GET  /metrics, /health               the gauges fleet.py reads

Run: `python -m benchmarks.ideal_server --port N` (fleet.py starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import uuid
from collections import defaultdict
from typing import Any

from aiohttp import web

from config_generator.catalog import load_catalog
from config_generator.render import render

TEMPLATE = "process-baseline-v1"


class Ideal:
    """Hosts, their pending tasks and held polls, and each deployment's completed tasks."""

    def __init__(self) -> None:
        rendered = render(load_catalog()[TEMPLATE], {}, variant="baseline")
        self.payload = {
            "config_yaml": rendered.config_yaml,
            "config_hash": rendered.config_hash,
            "pipeline": TEMPLATE,
        }
        self.namespaces: dict[str, set[str]] = defaultdict(set)
        self.pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.held = 0
        self.task_deployment: dict[str, str] = {}
        self.completed: dict[str, int] = defaultdict(int)

    async def heartbeat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.namespaces[str(body.get("namespace") or "default")].add(request.headers["X-Agent-Host-ID"])
        return web.json_response({"ok": True})

    async def tasks(self, request: web.Request) -> web.Response:
        host = request.headers["X-Agent-Host-ID"]
        wait = float(request.query.get("wait", "30"))
        if not self.pending.get(host) and wait > 0:
            future = self.waiting.get(host)
            if future is None or future.done():
                future = self.waiting[host] = asyncio.get_running_loop().create_future()
            self.held += 1
            try:
                await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                pass
            finally:
                self.held -= 1
        tasks = self.pending.pop(host, [])
        return web.json_response({"tasks": tasks})

    async def status(self, request: web.Request) -> web.Response:
        body = await request.json()
        results = []
        for report in body.get("reports", []):
            if report.get("status") == "completed":
                deployment = self.task_deployment.pop(report["id"], None)
                if deployment is not None:
                    self.completed[deployment] += 1
            results.append({"id": report["id"], "outcome": "applied"})
        return web.json_response({"results": results})

    async def deploy(self, request: web.Request) -> web.Response:
        body = await request.json()
        deployment = str(uuid.uuid4())
        hosts = self.namespaces.get(str(body.get("namespace") or "default"), set())
        for host in hosts:
            task_id = str(uuid.uuid4())
            self.task_deployment[task_id] = deployment
            self.pending[host].append(
                {
                    "id": task_id,
                    "type": "deployment",
                    "action": "apply",
                    "payload": {**self.payload, "deployment_id": deployment},
                }
            )
            future = self.waiting.pop(host, None)
            if future is not None and not future.done():
                future.set_result(None)
        return web.json_response({"id": deployment, "hosts": len(hosts)}, status=201)

    async def deployment(self, request: web.Request) -> web.Response:
        return web.json_response({"completed": self.completed.get(request.match_info["id"], 0)})

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(text=f"phoenix_long_polls_waiting {self.held}\n")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "config_hash": hashlib.sha256(b"ideal").hexdigest()})


def create_app() -> web.Application:
    ideal = Ideal()
    app = web.Application()
    app.router.add_post("/api/v1/agent/heartbeat", ideal.heartbeat)
    app.router.add_get("/api/v1/agent/tasks", ideal.tasks)
    app.router.add_post("/api/v1/agent/tasks/status", ideal.status)
    app.router.add_post("/api/v1/pipeline-deployments", ideal.deploy)
    app.router.add_get("/ideal/deployments/{id}", ideal.deployment)
    app.router.add_get("/metrics", ideal.metrics)
    app.router.add_get("/health", ideal.health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    opts = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=opts.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
