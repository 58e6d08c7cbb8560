"""One LISTEN connection per API process: wakes long polls and fans events out to WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
import structlog

log = structlog.get_logger("phoenix.listener")

TASKS_CHANNEL = "phoenix_tasks"
EVENTS_CHANNEL = "phoenix_events"


class Wakeable(Protocol):
    """What the LISTEN loop wakes: the long-poll dispatcher."""

    def wake(self, host_id: str) -> None: ...

    def wake_all(self) -> None: ...


class Subscriber:
    """A WebSocket client's bounded inbox; a full inbox marks it slow instead of blocking others."""

    # A fan-out to 10,000 agents emits 10,000 task events within a second or two: the inbox holds a burst
    # that size (a few MB at most) so that only a client that really stops reading is dropped.
    def __init__(self, topics: set[str], maxsize: int = 16_384):
        self.topics = topics
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.dropped = False

    def wants(self, event: dict[str, Any]) -> bool:
        if "*" in self.topics or event.get("topic") in self.topics:
            return True
        subject = event.get("subject")
        data = event.get("data") or {}
        ids = {subject, data.get("experiment_id"), data.get("deployment_id"), data.get("host_id")}
        return bool(self.topics & {i for i in ids if i})


class EventHub:
    """Delivers events from NOTIFY to every subscriber of this process."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.on_event: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, topics: set[str]) -> Subscriber:
        sub = Subscriber(topics)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def broadcast(self, event: dict[str, Any]) -> None:
        for hook in self.on_event:
            hook(event)
        for sub in list(self.subscribers):
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped = True
                self.subscribers.discard(sub)
                log.warning("slow_subscriber_dropped", topics=sorted(sub.topics))


class Listener:
    """Keeps a LISTEN connection open, reconnecting with backoff; wakes everyone after a gap."""

    def __init__(self, url: str, waiters: Wakeable, hub: EventHub):
        self.url = url
        self.waiters = waiters
        self.hub = hub
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {TASKS_CHANNEL}")
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self.connected.set()
                    # Anything enqueued while we were not listening: let every poll re-check.
                    self.waiters.wake_all()
                    delay = 0.5
                    burst = 0
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
                        burst += 1
                        if burst % 256 == 0:
                            await asyncio.sleep(0)  # let the WebSocket pumps drain a long burst
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                # Wake-ups may be missed from now on: no host counts as known to be idle any more.
                self.waiters.wake_all()
                log.warning("listener_disconnected", error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == TASKS_CHANNEL:
            self.waiters.wake(payload)
        elif channel == EVENTS_CHANNEL:
            try:
                event = json.loads(payload)
            except json.JSONDecodeError:
                log.warning("bad_event_payload")
                return
            self.hub.broadcast(event)
