"""Per-host agent tokens: checked on every agent request (with a cache), issued and revoked by operators."""

from __future__ import annotations

import time
from typing import Any

import structlog

from control_plane.db import Tx
from control_plane.stores.tokens import TokenStore
from phoenix_common.problems import Forbidden, Unauthorized
from phoenix_common.tokens import new_token, same_token, token_hash

log = structlog.get_logger("phoenix.tokens")


class AgentTokens:
    """Checks a host's token against its stored hash, remembering verified hashes for `ttl` seconds.

    10,000 agents poll and heartbeat, so a host whose token was verified in the last `ttl` seconds
    costs no database round trip. A revocation or rotation made through this process takes effect here
    at once; other replicas keep accepting the old token until their cached entry expires (at most
    `ttl` seconds), since nothing tells them. A token that does not match the cached hash is always
    looked up again, so a token rotated on another replica works here at once.
    """

    def __init__(
        self,
        store: TokenStore,
        ttl: float,
        max_entries: int = 200_000,
        *,
        enrolment_expires: float | None = None,
        enrolment_max_hosts: int = 0,
    ) -> None:
        # When the enrolment token stops enrolling (unix time) and how many hosts it may enrol (0: any).
        self.enrolment_expires = enrolment_expires
        self.enrolment_max_hosts = enrolment_max_hosts
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self._verified: dict[str, tuple[str, float]] = {}

    def _remember(self, host_id: str, digest: str) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        if len(self._verified) >= self.max_entries:
            self._verified = {h: e for h, e in self._verified.items() if e[1] > now}
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
        self._verified[host_id] = (digest, now + self.ttl)

    def forget(self, host_id: str) -> None:
        """Drop what this process remembers of a host's token (after a revocation or rotation)."""
        self._verified.pop(host_id, None)

    async def verify(self, host_id: str, presented: str, enrolment: str | None) -> str | None:
        """Pass if `presented` is the host's own token; bind a new one on enrolment and return it.

        Raises Unauthorized for a token that is nobody's, Forbidden for a valid token that is not this
        host's (another host's, or the enrolment token for a bound or revoked host).
        """
        digest = token_hash(presented)
        cached = self._verified.get(host_id)
        if cached is not None and cached[1] > time.monotonic() and same_token(cached[0], digest):
            return None
        row = await self.store.get(host_id)
        if row is not None and row["token_hash"] is not None:
            if same_token(row["token_hash"], digest):
                if row.get("first_used_at") is None:
                    await self.store.used(host_id)
                self._remember(host_id, row["token_hash"])
                return None
            self.forget(host_id)
        is_enrolment = enrolment is not None and same_token(presented, enrolment)
        if is_enrolment and (row is None or _unused_enrolment(row)):
            own = await self._enrol(host_id, again=row is not None)
            if own is not None:
                return own
            row = {"token_hash": "raced"}
        if is_enrolment:
            if row is not None and row["token_hash"] is None:
                raise Forbidden(
                    f"the token of host {host_id} was revoked; an operator must issue it a new one",
                    field="Authorization",
                )
            raise Forbidden(
                f"host {host_id} is bound to its own token; the enrolment token cannot act as it",
                field="Authorization",
            )
        if await self.store.owner(digest):
            raise Forbidden(f"this token cannot act as host {host_id}", field="Authorization")
        raise Unauthorized("the agent token is not valid", field="Authorization")

    async def _enrol(self, host_id: str, *, again: bool) -> str | None:
        """A new token of the host's own, bound by the enrolment token; None when another request won.

        Again (the host's enrolled token was never used: the answer that carried it was lost) it
        replaces that token, so that a retry after a 503, a 400 or a time-out is harmless. Bounded by
        the enrolment token's expiry and its host limit.
        """
        if self.enrolment_expires is not None and time.time() >= self.enrolment_expires:
            raise Forbidden("the enrolment token has expired; an operator must issue this host a token")
        own = new_token()
        if again:
            bound = await self.store.reenrol(host_id, token_hash(own))
        elif self.enrolment_max_hosts:
            async with self.store.db.transaction() as tx:
                bound = await self._enrol_counted(host_id, token_hash(own), tx)
        else:
            bound = await self.store.enrol(host_id, token_hash(own))
        if not bound:
            return None
        # Not cached: its first use must reach the database, which then closes the re-enrolment window.
        log.info("agent_token_enrolled", host_id=host_id, again=again)
        return own

    async def _enrol_counted(self, host_id: str, digest: str, tx: Tx) -> bool:
        """Counted and bound under one lock, so hosts enrolling at once cannot overshoot the limit."""
        await self.store.lock_enrolment(tx)
        if await self.store.enrolled(tx) >= self.enrolment_max_hosts:
            raise Forbidden(
                f"the enrolment token has enrolled its limit of {self.enrolment_max_hosts} hosts; "
                "an operator must issue this host a token"
            )
        return await self.store.enrol(host_id, digest, tx)

    async def issue(self, host_id: str) -> tuple[str, dict[str, Any]]:
        """A new token for the host (replacing its previous one at once here), and its row."""
        token = new_token()
        row = await self.store.issue(host_id, token_hash(token))
        self.forget(host_id)
        log.info("agent_token_issued", host_id=host_id, replaced=row["replaced"])
        return token, row

    async def revoke(self, host_id: str, tx: Tx | None = None) -> dict[str, Any]:
        row = await self.store.revoke(host_id, tx)
        self.forget(host_id)
        log.info("agent_token_revoked", host_id=host_id, had_token=row["had_token"])
        return row


def _unused_enrolment(row: dict[str, Any]) -> bool:
    """A host enrolled by the enrolment token whose own token has not been used yet."""
    return (
        row.get("source") == "enrolled" and row.get("first_used_at") is None and row["token_hash"] is not None
    )
