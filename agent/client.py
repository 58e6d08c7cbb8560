"""HTTP client for the control plane's agent endpoints (docs/contracts.md), with backoff while it is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from agent.state import Outbox, OutboxEntry

log = structlog.get_logger("phoenix.agent.client")

T = TypeVar("T")
AGENT_PREFIX = "/api/v1/agent"
BACKOFF_MAX_SECONDS = 30.0
# The control plane answers an agent's first call with the enrolment token with a token of the host's own.
AGENT_TOKEN_HEADER = "X-Phoenix-Agent-Token"


class ApiUnavailable(Exception):
    """The control plane could not be reached or answered 5xx/429/401/403; worth retrying later."""


class ApiRejected(Exception):
    """The control plane refused the request for good (4xx other than 401/403/408/429)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


# Auth failures are retried: an operator fixing the token on the control plane must not lose reports.
_RETRYABLE_STATUS = frozenset({401, 403, 408, 429})


def _detail(status: int, text: str) -> str:
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("detail"):
            return str(body["detail"])
    except ValueError:
        pass
    return " ".join(text.split())[:300] or f"HTTP {status}"


class ControlPlaneClient:
    """Calls the agent API as one host; every call names the host and carries the agent token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        host_id: str,
        token: str | None = None,
        *,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        request_timeout: float = 15.0,
        on_token: Callable[[str], None] | None = None,
        stored_token: str | None = None,
        on_stored_token_dropped: Callable[[], None] | None = None,
    ) -> None:
        """`token` is the configured one; `stored_token`, saved by an earlier enrolment, is tried first."""
        self._session = session
        self._base = api_url.rstrip("/") + AGENT_PREFIX
        self._headers = {"X-Agent-Host-ID": host_id, "Accept": "application/json"}
        self._configured = token or None
        self._stored = stored_token if stored_token and stored_token != token else None
        self._set_token(self._stored or self._configured)
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._on_token = on_token
        self._on_stored_token_dropped = on_stored_token_dropped
        self._fallback_logged = False
        self._stored_refused = False

    def _set_token(self, token: str | None) -> None:
        self._token = token
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        else:
            self._headers.pop("Authorization", None)

    def _token_refused(self, used: str | None, status: int) -> bool:
        """After a 401/403 with token `used`: switch between the stored and the configured token (an
        operator may have rotated the host's token and updated the config, or the stored one may be the
        good one after all); True when there is another token to try now."""
        if used != self._token:
            return True  # another request switched already: retry with the current token
        other = self._configured if used == self._stored else self._stored
        if not other or other == used:
            return False
        self._set_token(other)
        self._stored_refused = other == self._configured
        if self._stored_refused and not self._fallback_logged:
            self._fallback_logged = True
            log.warning(
                "agent_token_fallback", status=status, detail="stored token refused; using the configured one"
            )
        return True

    def _token_accepted(self, used: str | None) -> None:
        """The configured token works where the stored one was refused: forget the stored one for good."""
        if used is None or used != self._token:
            return
        if used == self._stored:
            self._stored_refused = False
        if not self._stored_refused or used != self._configured:
            return
        self._stored, self._stored_refused = None, False
        if self._on_stored_token_dropped is not None:
            self._on_stored_token_dropped()
        log.info("agent_stored_token_dropped")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, ApiUnavailable to retry, or ApiRejected. Refused (401/403)
        with one token while the agent has another, it is sent again at once with the other."""
        for attempt in (1, 2):
            used = self._token
            status, answer = await self._send(method, path, body=body, params=params, timeout=timeout)
            if status in (401, 403):
                if attempt == 1 and self._token_refused(used, status):
                    continue
                raise ApiUnavailable(f"{method} {path}: HTTP {status}: {answer}")
            self._token_accepted(used)
            return answer
        raise AssertionError("unreachable")  # the second attempt returns or raises

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        timeout: float | None,
    ) -> tuple[int, Any]:
        """(status, decoded answer) of one request; with a token to fall back on, 401/403 come back as
        (status, detail) for the caller to try the other token."""
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=body,
                params=params,
                headers=dict(self._headers),
                timeout=aiohttp.ClientTimeout(total=timeout or self.request_timeout),
            ) as response:
                text = await response.text()
                self._adopt_token(response.headers.get(AGENT_TOKEN_HEADER))
                if response.status in (401, 403) and self._has_fallback():
                    return response.status, _detail(response.status, text)
                if response.status >= 500 or response.status in _RETRYABLE_STATUS:
                    raise ApiUnavailable(
                        f"{method} {path}: HTTP {response.status}: {_detail(response.status, text)}"
                    )
                if response.status >= 400:
                    raise ApiRejected(response.status, _detail(response.status, text))
                try:
                    return response.status, json.loads(text) if text else {}
                except ValueError:
                    raise ApiUnavailable(f"{method} {path}: answer is not JSON") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}".strip()) from None

    def _has_fallback(self) -> bool:
        return self._stored is not None and self._configured is not None

    def _adopt_token(self, token: str | None) -> None:
        """Switch to the host's own token the control plane issued on enrolment (never logged)."""
        if not token or self._token == token:
            return
        self._set_token(token)
        self._stored = token if token != self._configured else None
        self._stored_refused = False
        if self._on_token is not None:
            self._on_token(token)
        log.info("agent_enrolled")

    async def with_backoff(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry `call` with jittered exponential backoff for as long as the control plane is unavailable."""
        attempt = 0
        async for retry in AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.5, max=self.backoff_max),
            retry=retry_if_exception_type(ApiUnavailable),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "control_plane_unavailable",
                call=what,
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
                retry_in_seconds=round(state.next_action.sleep, 2) if state.next_action else None,
            ),
        ):
            with retry:
                attempt += 1
                result = await call()
        if attempt > 1:
            log.info("control_plane_reachable", call=what, attempts=attempt)
        return result

    async def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /heartbeat once."""
        answer = await self._request("POST", "/heartbeat", body=body)
        return answer if isinstance(answer, dict) else {}

    async def poll_tasks(self, wait: float) -> list[dict[str, Any]]:
        """GET /tasks?wait=..., held by the control plane up to `wait` seconds."""
        answer = await self._request(
            "GET", "/tasks", params={"wait": str(int(wait))}, timeout=wait + self.request_timeout
        )
        tasks = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(tasks, list):
            raise ApiUnavailable("GET /tasks: answer has no tasks list")
        return tasks

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to an agent path such as /tasks/{id}/status or /measurements."""
        return await self._request("POST", path, body=body)


class Reporter:
    """Sends task status reports and measurement batches in order, from the outbox, until accepted."""

    def __init__(self, client: ControlPlaneClient, outbox: Outbox) -> None:
        self.client = client
        self.outbox = outbox
        # Off once the control plane answered that it has no batch endpoint.
        self.batch_reports = True
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    def status(
        self, task_id: str, status: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Queue a task status report (persisted before this returns)."""
        body: dict[str, Any] = {"status": status}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        self.outbox.put("status", f"/tasks/{task_id}/status", body)
        log.info("task_status_queued", task_id=task_id, status=status, error=error)
        self._poke()

    def measurements(self, experiment_id: str, task_id: str, samples: list[dict[str, Any]]) -> None:
        """Queue one batch of samples of a running experiment."""
        body = {"experiment_id": experiment_id, "task_id": task_id, "samples": samples}
        self.outbox.put("measurements", "/measurements", body)
        self._poke()

    def _poke(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Deliver entries oldest first; one not yet deliverable holds back the rest (order matters).

        Status reports waiting together (tasks that finished while the control plane was slow or away,
        or quick tasks done in a row) go in one request, POST /tasks/status, up to BATCH_REPORTS, in
        order, never two of one task in one request: one request and one statement instead of many.
        """
        while True:
            self._wake.clear()
            entries = self.outbox.pending()
            if not entries:
                self._idle.set()
                await self._wake.wait()
                continue
            i = 0
            while i < len(entries):
                group = _status_run(entries, i) if self.batch_reports else []
                if len(group) > 1:
                    await self._deliver_many(group)
                    i += len(group)
                else:
                    await self._deliver(entries[i])
                    i += 1

    async def _deliver_many(self, group: list[OutboxEntry]) -> None:
        reports = [{"id": _task_of(e), **e.body} for e in group]
        try:
            answer = await self.client.with_backoff(
                "report batch", lambda: self.client.post("/tasks/status", {"reports": reports})
            )
        except ApiRejected as exc:
            if exc.status in (404, 405):
                # A control plane without the batch endpoint: one report a request from now on.
                log.info("report_batches_unsupported", status=exc.status)
                self.batch_reports = False
            for entry in group:  # one by one: only a report the control plane refuses is dropped
                await self._deliver(entry)
            return
        results = answer.get("results") if isinstance(answer, dict) else None
        for result in results if isinstance(results, list) else []:
            if isinstance(result, dict) and result.get("outcome") in ("conflict", "not_found"):
                log.warning(
                    "report_dropped", kind="status", task_id=result.get("id"), outcome=result["outcome"]
                )
        for entry in group:
            self.outbox.done(entry)
        log.debug("reports_delivered", reports=len(group))

    async def _deliver(self, entry: OutboxEntry) -> None:
        try:
            await self.client.with_backoff(
                f"report {entry.kind}", lambda: self.client.post(entry.path, entry.body)
            )
            log.debug("report_delivered", kind=entry.kind, path=entry.path)
        except ApiRejected as exc:
            # 404/409: the control plane no longer expects this report (task gone, or finished another way).
            log.warning(
                "report_dropped", kind=entry.kind, path=entry.path, status=exc.status, detail=exc.detail
            )
        self.outbox.done(entry)

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued is delivered; False if `timeout` passed first."""
        if not len(self.outbox):
            return True
        self._idle.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


# At most this many status reports in one POST /tasks/status (the control plane takes 1-100).
BATCH_REPORTS = 100


def _task_of(entry: OutboxEntry) -> str:
    """The task id of a status entry's path, /tasks/{id}/status."""
    return entry.path.removeprefix("/tasks/").removesuffix("/status")


def _status_run(entries: list[OutboxEntry], start: int) -> list[OutboxEntry]:
    """The status entries from `start` on that can share one request: consecutive, at most
    BATCH_REPORTS, each of another task (a later report of a task waits for the next request)."""
    run: list[OutboxEntry] = []
    tasks: set[str] = set()
    for entry in entries[start : start + BATCH_REPORTS]:
        if entry.kind != "status" or not entry.path.endswith("/status") or _task_of(entry) in tasks:
            break
        tasks.add(_task_of(entry))
        run.append(entry)
    return run
