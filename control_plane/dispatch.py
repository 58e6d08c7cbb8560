"""Hands tasks to waiting long polls, claiming for many hosts in one statement.

A long poll registers its host and waits on a future. A host becomes *due* when its poll arrives and
whenever a NOTIFY says it may have work (a wildcard NOTIFY makes every waiting host due). One claimer
loop takes the due hosts in batches and claims for each batch in one statement, so a fan-out to
10,000 waiting agents costs a handful of statements rather than 10,000, and waiting agents cost the
database nothing at all. Several API replicas may claim for the same host: `FOR UPDATE SKIP LOCKED`
gives each task to exactly one of them.

`wakeup="interval"` is the other way to wait: each waiting poll re-queries the database every
`interval` seconds. It needs no LISTEN (for connection poolers in transaction mode, which cannot
carry LISTEN), and it is the peer `benchmarks/fleet.py` measures the NOTIFY path against.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog

from control_plane.queue import TaskQueue
from phoenix_common.problems import TooManyRequests

log = structlog.get_logger("phoenix.dispatch")

Tasks = list[dict[str, Any]]


class Dispatcher:
    """The long polls of one API process, and the claimer that serves them."""

    def __init__(
        self,
        queue: TaskQueue,
        *,
        wakeup: str = "notify",
        batch_max: int = 10_000,
        interval: float = 1.0,
        workers: int = 2,
        per_host: int = 4,
    ) -> None:
        self.queue = queue
        # Waiting polls one host may hold at once; its next one is refused (TooManyRequests).
        self.per_host = per_host
        self._held: dict[str, int] = {}
        self.workers = workers
        self.wakeup = wakeup
        self.batch_max = batch_max
        self.interval = interval
        self._waiting: dict[str, list[asyncio.Future[Tasks]]] = defaultdict(list)
        self._due: dict[str, None] = {}  # insertion-ordered set: first due, first claimed
        self._kick = asyncio.Event()
        # Wake-up generations: global (a wildcard NOTIFY, a LISTEN reconnect) and per host. A host whose
        # last claim came back empty is *clean* while neither generation moved since that claim began:
        # every task that becomes pending sends a NOTIFY (insert and requeue triggers), so its next
        # poll needs no claim. Taken at the claim's start, a NOTIFY racing the claim is never lost.
        self._generation = 0
        self._host_generation: dict[str, int] = {}
        self._clean: dict[str, tuple[int, int]] = {}
        self._polling = 0  # polls claiming for themselves (interval mode, or no wait)
        self.claims = 0  # statements run, for the metrics and the benchmark
        self.skipped = 0  # polls that needed no claim

    def __len__(self) -> int:
        return sum(len(f) for f in self._waiting.values()) + self._polling

    # Wake-ups, called by the LISTEN loop.
    def wake(self, host_id: str) -> None:
        if host_id == "*":
            self.wake_all()
            return
        self._host_generation[host_id] = self._host_generation.get(host_id, 0) + 1
        self._clean.pop(host_id, None)
        if host_id in self._waiting:
            self._mark_due([host_id])

    def wake_all(self) -> None:
        self._generation += 1
        self._clean.clear()
        self._mark_due(list(self._waiting))

    def _stamp(self, host_id: str) -> tuple[int, int]:
        return (self._generation, self._host_generation.get(host_id, 0))

    def _mark_due(self, hosts: Sequence[str]) -> None:
        if self.wakeup != "notify" or not hosts:
            return
        for host in hosts:
            self._due[host] = None
        self._kick.set()

    async def wait(self, host_id: str, timeout: float) -> Tasks:
        """The host's next tasks, or [] when none came within `timeout` seconds.

        Raises TooManyRequests when the host already holds `per_host` polls that wait: one host's token
        cannot pin an unbounded number of the API's connections and futures. A poll that does not wait
        (`timeout` 0) only claims, and is not counted.
        """
        if timeout <= 0:
            return await self._wait(host_id, timeout)
        held = self._held.get(host_id, 0)
        if held >= self.per_host:
            raise TooManyRequests(
                f"host {host_id} already has {held} long polls waiting (long_polls_per_host); "
                "poll again when one is answered"
            )
        self._held[host_id] = held + 1
        try:
            return await self._wait(host_id, timeout)
        finally:
            left = self._held[host_id] - 1
            if left:
                self._held[host_id] = left
            else:
                del self._held[host_id]

    async def _wait(self, host_id: str, timeout: float) -> Tasks:
        if self.wakeup == "interval" or timeout <= 0:
            return await self._wait_interval(host_id, timeout)
        future: asyncio.Future[Tasks] = asyncio.get_running_loop().create_future()
        self._waiting[host_id].append(future)
        if self._clean.get(host_id) == self._stamp(host_id):
            self.skipped += 1  # nothing became pending for it since its last empty claim
        else:
            self._mark_due([host_id])  # claim at once: there may be work already
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            self._forget(host_id, future)
        if future.done() and not future.cancelled():
            return future.result()
        future.cancel()
        return []

    def _forget(self, host_id: str, future: asyncio.Future[Tasks]) -> None:
        futures = self._waiting.get(host_id)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(future)
        if not futures:
            del self._waiting[host_id]

    async def _wait_interval(self, host_id: str, timeout: float) -> Tasks:
        """Claim now and then every `interval` seconds until there is work or the time is up. Such a
        poll is counted as waiting but never handed tasks by the claimer (it claims its own)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._polling += 1
        try:
            while True:
                self.claims += 1
                tasks = await self.queue.claim(host_id)
                remaining = deadline - loop.time()
                if tasks or remaining <= 0:
                    return tasks
                await asyncio.sleep(min(self.interval, remaining))
        finally:
            self._polling -= 1

    async def run(self) -> None:
        """The claimers, until cancelled: two, so that one batch's statement runs in the database while
        the other's tasks are handed out here."""
        await asyncio.gather(*(self._claimer() for _ in range(self.workers)))

    async def _claimer(self) -> None:
        """Claims for due hosts in batches; survives database outages."""
        delay = 0.5
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._due:
                batch = self._take_batch()
                if not batch:
                    break
                stamps = {host: self._stamp(host) for host in batch}
                try:
                    self.claims += 1
                    rows = await self.queue.claim_hosts(batch)
                except asyncio.CancelledError:
                    for host in batch:  # nothing is lost if the other claimer goes on
                        self._due.setdefault(host, None)
                    raise
                except Exception as exc:
                    # The polls keep waiting (and time out by themselves); try these hosts again soon.
                    log.warning("claim_failed", error=f"{type(exc).__name__}: {exc}", hosts=len(batch))
                    for host in batch:
                        self._due.setdefault(host, None)
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.5
                served: dict[str, int] = {}
                for row in rows:
                    served[row["host_id"]] = served.get(row["host_id"], 0) + 1
                for host, stamp in stamps.items():
                    # Fewer than a full claim: the host had nothing more pending when the claim ran.
                    if served.get(host, 0) < self.queue.claim_limit:
                        self._clean[host] = stamp
                await self._deliver(rows)
            if self._due:
                self._kick.set()

    def _take_batch(self) -> list[str]:
        batch: list[str] = []
        while self._due and len(batch) < self.batch_max:
            host = next(iter(self._due))
            del self._due[host]
            if host in self._waiting:
                batch.append(host)
        return batch

    async def _deliver(self, rows: Tasks) -> None:
        """Give each host's tasks to its oldest waiting poll; tasks nobody waits for any more go back."""
        by_host: dict[str, Tasks] = defaultdict(list)
        for row in rows:
            by_host[row["host_id"]].append(row)
        orphaned: list[str] = []
        for host, tasks in by_host.items():
            tasks.sort(key=lambda r: (-r["priority"], r["created_at"]))
            receiver = next((f for f in self._waiting.get(host, ()) if not f.done()), None)
            if receiver is None:
                orphaned.extend(str(t["id"]) for t in tasks)
            else:
                receiver.set_result(tasks)
        if orphaned:
            # The poll timed out while its claim ran: back to the queue without counting an attempt.
            try:
                await self.queue.release(orphaned)
            except Exception as exc:  # the lease reaper returns them later
                log.warning("release_failed", error=str(exc), tasks=len(orphaned))
