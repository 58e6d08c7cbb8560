"""Body size limits: an oversized body is a 413 problem on operator and agent endpoints of both services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import http_json
from tests.support.security import (
    OPERATOR,
    agent,
    assert_problem,
    issue_token,
    operator,
    start_secured_stack,
)
from tests.support.services import Stack

API_LIMIT = 16_384
GENERATOR_LIMIT = 8_192


@pytest.fixture
def small_bodies(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    stack = start_secured_stack(
        database_url,
        tmp_path,
        api_env={"PHOENIX_MAX_BODY_BYTES": str(API_LIMIT)},
        generator_env={"PHOENIX_GENERATOR_MAX_BODY_BYTES": str(GENERATOR_LIMIT)},
    )
    yield stack
    stack.api.stop()
    stack.generator.stop()


def padded(size: int, **fields: object) -> bytes:
    """A JSON object of about `size` bytes."""
    import json

    return json.dumps({**fields, "padding": "x" * size}).encode()


def test_oversized_bodies_are_413_problems(small_bodies: Stack) -> None:
    api, generator = small_bodies.api.url, small_bodies.generator.url
    token = issue_token(small_bodies.api, "big-1")
    cases = [
        # An operator endpoint and an agent endpoint of the API (authorised, so the limit is what answers).
        (f"{api}/api/v1/pipeline-deployments", operator(), API_LIMIT),
        (f"{api}/api/v1/agent/heartbeat", agent("big-1", token), API_LIMIT),
        (f"{api}/api/v1/agent/measurements", agent("big-1", token), API_LIMIT),
        # The generator's two POST endpoints.
        (f"{generator}/api/v1/render", operator(), GENERATOR_LIMIT),
        (f"{generator}/api/v1/generate", operator(), GENERATOR_LIMIT),
    ]
    for url, headers, limit in cases:
        status, body, hdrs = http_json("POST", url, padded(limit + 1), headers)
        assert_problem(status, body, hdrs, 413)
        assert f"limit of {limit} bytes" in body["detail"], body
        # Just under the limit the body is read and judged on its content.
        status, body, hdrs = http_json("POST", url, padded(limit - 200), headers)
        assert status in (200, 400), (url, status, body)
    # Without a token an oversized body is refused before it is read.
    status, body, hdrs = http_json(
        "POST", f"{api}/api/v1/agent/heartbeat", padded(API_LIMIT * 4), {"X-Agent-Host-ID": "big-2"}
    )
    assert_problem(status, body, hdrs, 401)
    status, body, hdrs = http_json("POST", f"{generator}/api/v1/render", padded(GENERATOR_LIMIT * 4))
    assert_problem(status, body, hdrs, 401)
    assert http_json("GET", f"{api}/health")[0] == 200 and http_json("GET", f"{generator}/health")[0] == 200
    assert OPERATOR not in small_bodies.api.process.log_path.read_text()
