"""`phoenix experiment watch`: follow one experiment live over the control plane's WebSocket."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from phoenix_cli import views
from phoenix_cli.client import quote, reason
from phoenix_cli.errors import EXIT_NEGATIVE, EXIT_OK, ApiError, Unreachable
from phoenix_cli.render import clock, num, pct

if TYPE_CHECKING:
    import aiohttp

    from phoenix_cli.commands import Context

PHASES = ("pending", "deploying", "warming_up", "running", "analyzing", "completed", "failed", "stopped")
FINAL = ("completed", "failed", "stopped")
# How long to keep reconnecting after the connection drops before giving up with exit 5.
RECONNECT_FOR = 60.0


def ws_url(api_url: str) -> str:
    parts = urllib.parse.urlsplit(api_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/v1/ws", "", ""))


def watch(ctx: Context, experiment_id: str) -> int:
    """Follow until the experiment is final; 0 when it completed, 1 when it failed or was stopped."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    return asyncio.run(Watcher(ctx, experiment_id).run())


class Watcher:
    """Prints the experiment's state, then every event for it, reconnecting if the socket drops."""

    def __init__(self, ctx: Context, experiment_id: str):
        self.ctx = ctx
        self.id = experiment_id
        self.path = f"/api/v1/experiments/{quote(experiment_id)}"
        self.phase: str | None = None
        self.live = False
        self.url = ws_url(ctx.settings.api_url)
        self.headers = {"Authorization": f"Bearer {ctx.settings.token}"} if ctx.settings.token else {}

    def emit(self, frame: Any, human: str | None) -> None:
        if self.ctx.json:
            print(json.dumps(frame, ensure_ascii=False))
        elif human is not None:
            print(human)

    async def get(self, path: str) -> Any:
        return await asyncio.to_thread(self.ctx.api.get, path)

    async def run(self) -> int:
        import aiohttp

        # A plain GET first: a missing experiment, a bad token or a dead API get their usual exit codes.
        first = await self.get(self.path)
        if first.get("phase") in FINAL:
            self.show_state(first)
            return await self.finish()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.ctx.settings.timeout, sock_connect=self.ctx.settings.timeout
        )
        lost_at: float | None = None
        delay = 0.25
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                code, why = await self.attempt(session)
                if code is not None:
                    return code
                now = time.monotonic()
                if self.live:
                    # It was subscribed before dropping: a new outage starts now.
                    self.live, lost_at, delay = False, None, 0.25
                if lost_at is None:
                    lost_at = now
                    print(
                        f"phoenix: lost the connection to the control plane ({why}); reconnecting",
                        file=sys.stderr,
                    )
                elif now - lost_at > RECONNECT_FOR:
                    raise Unreachable(
                        "control plane",
                        self.ctx.settings.api_url,
                        f"no connection for {RECONNECT_FOR:g}s: {why}",
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def attempt(self, session: aiohttp.ClientSession) -> tuple[int | None, str]:
        """One connection: (exit code, "") when the experiment ended, else (None, why it dropped)."""
        import aiohttp

        try:
            code = await self.follow(session)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status < 500:
                raise ApiError(
                    exc.status, f"the control plane refused the WebSocket: HTTP {exc.status} {exc.message}"
                ) from None
            return None, f"HTTP {exc.status}"
        except ApiError as exc:
            if exc.status < 500:
                raise
            return None, exc.message
        except aiohttp.ClientConnectorError as exc:
            return None, reason(exc.os_error)
        except (aiohttp.ClientError, OSError, Unreachable) as exc:
            return None, getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return code, "" if code is not None else "the control plane closed the connection"

    async def follow(self, session: aiohttp.ClientSession) -> int | None:
        """One connection: the exit code once the experiment is final, None when the socket closed first."""
        from aiohttp import WSMsgType

        async with session.ws_connect(
            self.url, headers=self.headers, heartbeat=20.0, max_msg_size=1024 * 1024
        ) as ws:
            await ws.send_json({"subscribe": [self.id]})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame.get("type") == "subscribed":
                    self.live = True
                    # The state is read (and shown) only once subscribed, so no change can fall in between.
                    self.show_state(await self.get(self.path))
                elif frame.get("type") == "error":
                    raise ApiError(400, f"the control plane rejected the subscription: {frame.get('detail')}")
                elif frame.get("type") == "event":
                    self.show_event(frame)
                if self.phase in FINAL:
                    return await self.finish()
        return None

    def show_state(self, experiment: dict[str, Any]) -> None:
        phase = experiment.get("phase")
        if phase == self.phase:
            return
        reason = f" - {experiment['phase_reason']}" if experiment.get("phase_reason") else ""
        self.emit(
            experiment,
            f"[{clock(experiment.get('phase_changed_at'))}] experiment {self.id} "
            f"({experiment.get('name')}): {phase}{reason}",
        )
        self.phase = phase

    def show_event(self, frame: dict[str, Any]) -> None:
        kind = frame.get("kind")
        data = frame.get("data") or {}
        at = f"[{clock(frame.get('ts'))}]"
        if kind == "experiment_phase":
            to = data.get("to")
            if not self._is_news(to):
                return
            reason = f": {frame['reason']}" if frame.get("reason") else ""
            self.emit(frame, f"{at} phase {data.get('from')} -> {to}{reason}")
            self.phase = to
        elif kind == "measurement":
            self.emit(
                frame,
                f"{at} measurement {data.get('host_id')} ({data.get('phase')}): "
                f"{_points(data.get('points') or [])}",
            )
        elif str(kind).startswith("task_"):
            error = f": {data['error']}" if data.get("error") else ""
            task = f"{data.get('type')}/{data.get('action', '-')}"
            self.emit(frame, f"{at} task {task} {data.get('status')} on {data.get('host_id')}{error}")
        else:
            reason = f": {frame['reason']}" if frame.get("reason") else ""
            self.emit(frame, f"{at} {kind}{reason}")

    def _is_news(self, to: Any) -> bool:
        """False for a phase already shown, or an older one that arrived after the state was read."""
        if to not in PHASES or to == self.phase:
            return False
        if self.phase in PHASES and to not in FINAL:
            return PHASES.index(to) > PHASES.index(self.phase)
        return True

    async def finish(self) -> int:
        analysis = await self.get(f"{self.path}/analysis")
        if self.ctx.json:
            self.emit(analysis, None)
        else:
            print()
            print(views.analysis_view(analysis))
        return EXIT_OK if self.phase == "completed" else EXIT_NEGATIVE


def _points(points: list[dict[str, Any]]) -> str:
    """The newest point of each variant, and the reduction when both are there: billed series (distinct
    over the billing window) when the agent reports them, else the newest collection's, named so."""
    billed = any(isinstance(p.get("billed_series"), int | float) for p in points)
    field, unit = ("billed_series", "billed series") if billed else ("active_series", "series (snapshot)")
    latest: dict[str, float] = {}
    for point in points:
        if isinstance(point.get(field), int | float):
            latest[str(point.get("variant"))] = float(point[field])
    text = ", ".join(f"{variant} {num(value, 0)} {unit}" for variant, value in sorted(latest.items()))
    base, cand = latest.get("baseline"), latest.get("candidate")
    if base and cand is not None:
        change = 100.0 * (1 - cand / base)
        text += f" ({pct(abs(change))} {'fewer' if change >= 0 else 'more'})"
    return text or "no points"
