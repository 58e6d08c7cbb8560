"""Reading experiments from the control plane, over HTTP only."""

from __future__ import annotations

from typing import Any

import aiohttp
import structlog
from yarl import URL

from phoenix_common.problems import BadGateway, NotFound

log = structlog.get_logger("phoenix.generator.control_plane")


class ControlPlaneClient:
    """GET /api/v1/experiments/{id} with the generator's token."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None, timeout: float):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's JSON; NotFound if the control plane does not know it, BadGateway otherwise."""
        url = URL(self.base_url) / "api" / "v1" / "experiments" / experiment_id
        try:
            async with self.session.get(url, headers=self.headers, timeout=self.timeout) as resp:
                if resp.status == 404:
                    raise NotFound(
                        f"experiment {experiment_id} is not known to the control plane at {self.base_url}"
                    )
                if resp.status != 200:
                    raise BadGateway(
                        f"control plane at {self.base_url} answered {resp.status} {resp.reason} "
                        f"for experiment {experiment_id}"
                    )
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("control_plane_unreachable", url=self.base_url, error=type(exc).__name__)
            raise BadGateway(
                f"control plane at {self.base_url} is unreachable ({type(exc).__name__}); "
                "start it or set control_plane_url"
            ) from None
        if not isinstance(body, dict):
            raise BadGateway(
                f"control plane at {self.base_url} answered experiment {experiment_id} without a JSON object"
            )
        return body
