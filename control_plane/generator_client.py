"""The config generator, reached over HTTP only."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
from aiohttp import web

from control_plane import keys
from phoenix_common.problems import BadGateway, Problem

# What the generator reads of an experiment's spec.
GENERATE_FIELDS = ("baseline_pipeline", "candidate_pipeline", "parameters", "critical_processes")


class GeneratorClient:
    """Renders pipeline templates through the generator service."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def render(
        self,
        template: str,
        parameters: dict[str, Any] | None = None,
        variant: str = "main",
        experiment_id: str | None = None,
        destination: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"template": template, "parameters": parameters or {}, "variant": variant}
        if experiment_id:
            body["experiment_id"] = experiment_id
        if destination:
            body["destination"] = destination
        return await self._post("/api/v1/render", body)

    async def generate(
        self, experiment_id: str, spec: dict[str, Any], destinations: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Both configurations of an experiment, rendered from the spec sent with the request;
        `destinations` maps a variant (baseline, candidate) to where it ships."""
        body = {"experiment_id": experiment_id, **{k: spec.get(k) for k in GENERATE_FIELDS}}
        if destinations:
            body["destinations"] = destinations
        return await self._post("/api/v1/generate", body)

    async def templates(self) -> list[dict[str, Any]]:
        """Every template the generator serves, with its parameter schema (its GET /api/v1/templates)."""
        url = f"{self.base_url}/api/v1/templates"
        try:
            async with self.session.get(
                url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as resp:
                data = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise BadGateway(f"config generator at {self.base_url} is unreachable") from None
        entries = data.get("templates") if isinstance(data, dict) else None
        if status != 200 or not isinstance(entries, list):
            raise BadGateway(f"config generator at {self.base_url} answered {status} for its templates")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]

    async def takes(self, template: str, parameter: str) -> bool:
        """Whether `template` has a parameter named `parameter`."""
        for entry in await self.templates():
            if entry["name"] == template:
                return parameter in (entry.get("parameters") or {})
        return False

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            async with self.session.post(
                url, json=body, headers=self.headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    raise BadGateway(
                        f"config generator at {self.base_url} answered {resp.status} with a body that is "
                        "not JSON (is generator_url a Phoenix config generator?)"
                    ) from None
                if resp.status >= 500 or not isinstance(data, dict):
                    raise BadGateway(f"config generator at {self.base_url} answered {resp.status}")
                if resp.status >= 400:
                    # The generator's own words name the bad template or parameter.
                    raise Problem(
                        f"config generator rejected the pipeline: {data.get('detail', resp.reason)}",
                        status=422 if resp.status != 404 else 404,
                        title="Unprocessable Content" if resp.status != 404 else "Not Found",
                    )
                _check_hashes(data, self.base_url)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(
                f"config generator at {self.base_url} is unreachable ({type(exc).__name__}); "
                "start it with `phoenix-config-generator` or set generator_url"
            ) from None


def for_app(app: web.Application) -> GeneratorClient:
    """The client the API uses, with the token the generator requires (generator_token, else api_token)."""
    settings = app[keys.SETTINGS]
    token = settings.generator_token or settings.api_token
    return GeneratorClient(app[keys.HTTP], settings.generator_url, token)


def _check_hashes(data: dict[str, Any], base_url: str) -> None:
    """Every rendered config in the answer (the answer itself, or one per variant) must hash to the
    config_hash it comes with: the API relays that hash to agents, which refuse a config whose hash
    differs, so a wrong one is the generator's fault (502), not a task every agent fails."""
    rendered = [data, *(v for v in data.values() if isinstance(v, dict))]
    for entry in rendered:
        text, claimed = entry.get("config_yaml"), entry.get("config_hash")
        if text is None and claimed is None:
            continue
        if not isinstance(text, str) or not isinstance(claimed, str):
            raise BadGateway(f"config generator at {base_url} answered a config without its text or hash")
        actual = hashlib.sha256(text.encode()).hexdigest()
        if not hmac.compare_digest(actual, claimed):
            raise BadGateway(
                f"config generator at {base_url} answered a config whose config_hash {claimed[:12]!r} is not "
                f"its sha256 ({actual[:12]}): refused"
            )
