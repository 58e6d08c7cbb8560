"""Hostile JSON: what no JSON encoder of ours writes is a 400 problem at the door of both services.

NaN and Infinity (which Python's json reads and PostgreSQL's jsonb refuses), numbers beyond a double,
integers of thousands of digits (int() itself refuses them) or beyond 64 bits (PostgreSQL's bigint),
NUL and lone surrogates in any string or key, and nesting deeper than a parser's stack. Each is refused
with the field named where there is one, and nothing of it is stored: the hosts that sent it, and every
other host, still heartbeat and are seen.
"""

from __future__ import annotations

import json
import time

from tests.support import http_json
from tests.support.security import agent, assert_problem, issue_token, operator
from tests.support.services import Stack

HOSTILE = {
    "NaN": b'{"namespace": NaN}',
    "Infinity": b'{"namespace": -Infinity}',
    "beyond a double": b'{"namespace": 1e400}',
    "5,000 digits": b'{"namespace": ' + b"9" * 5000 + b"}",
    "beyond 64 bits": b'{"namespace": 9223372036854775808}',
    "NUL": b'{"namespace": "a\\u0000b"}',
    "lone surrogate": b'{"namespace": "\\ud800"}',
    "lone surrogate in a key": b'{"\\udc00": 1}',
    "deep nesting": b'{"namespace": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


def test_hostile_json_is_a_400_problem_on_both_services(secured_stack: Stack) -> None:
    api, generator = secured_stack.api.url, secured_stack.generator.url
    token = issue_token(secured_stack.api, "hostile-1")
    urls = [
        (f"{api}/api/v1/pipeline-deployments", operator()),
        (f"{api}/api/v1/experiments", operator()),
        (f"{api}/api/v1/agent/heartbeat", agent("hostile-1", token)),
        (f"{api}/api/v1/agent/measurements", agent("hostile-1", token)),
        (f"{generator}/api/v1/render", operator()),
    ]
    for url, headers in urls:
        for what, raw in HOSTILE.items():
            status, body, hdrs = http_json("POST", url, raw, headers)
            assert_problem(status, body, hdrs, 400)
            assert "key" in what or "nesting" in what or body.get("field") == "namespace", (what, url, body)


def test_a_figure_too_large_to_price_is_refused_naming_it(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    token = issue_token(secured_stack.api, "huge-1")
    sample = {"variant": "baseline", "ts": time.time(), "active_series": 10, "datapoints_per_second": 1e308}
    status, body, hdrs = http_json(
        "POST", f"{api}/api/v1/agent/measurements", {"samples": [sample]}, agent("huge-1", token)
    )
    assert_problem(status, body, hdrs, 400, "samples[0].datapoints_per_second")
    assert "between 0 and 1e+15" in body["detail"], body


def test_one_hosts_hostile_collector_block_leaves_every_host_seen(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    tokens = {h: issue_token(secured_stack.api, h) for h in ("calm-1", "rogue-1")}
    for host, token in tokens.items():
        status, body, _ = http_json("POST", f"{api}/api/v1/agent/heartbeat", {}, agent(host, token))
        assert status == 200, body
    rogue = [
        {"collector": {"state": "running", "last_error": "x\u0000y"}},
        {"collector": {"state": "running", "export": {"error": "\ud800"}}},
        {"collector": {"state": "running", "uptime_seconds": float("nan")}},
        {"collector": {"state": "running", "restarts": 10**20}},
    ]
    for body_ in rogue:
        raw = json.dumps(body_).encode()  # json.dumps writes NaN, \u0000 and lone surrogates as given
        status, body, hdrs = http_json(
            "POST", f"{api}/api/v1/agent/heartbeat", raw, agent("rogue-1", tokens["rogue-1"])
        )
        assert_problem(status, body, hdrs, 400, "collector")
    status, body, _ = http_json(
        "POST",
        f"{api}/api/v1/agent/heartbeat",
        {"collector": {"state": "running"}},
        agent("calm-1", tokens["calm-1"]),
    )
    assert status == 200, body
    status, body, _ = http_json("GET", f"{api}/api/v1/agents", None, operator())
    assert status == 200 and {a["host_id"] for a in body["agents"]} >= {"calm-1", "rogue-1"}, body
    status, text, _ = http_json("GET", f"{api}/metrics", None, operator())
    assert status == 200, text
