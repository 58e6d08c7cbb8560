"""Path traversal and template injection: every name either service takes, over real HTTP.

A name is refused with a 400 problem naming the field, or shown to be harmless: process names are free text
by nature (any executable name), so they are accepted and rendered with `$` escaped; an experiment's name is
display text that is stored and returned verbatim, never expanded or used as a path.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from tests.support import http_json
from tests.support.security import agent, assert_problem, issue_token, operator
from tests.support.services import Stack

TRAVERSAL = ["../../etc/passwd", "..%2F..%2Fetc", "..", "/etc/passwd", "a/../b"]
INJECTION = ["{{7*7}}", "${env:HOME}", "${file:/etc/passwd}", "$${x}", "{%print(1)%}", "$(id)"]
CONTROL = ["a\x00b", "a\nb", "name\n", "a\rb", "bidi\u202eexe"]
BAD = TRAVERSAL + INJECTION + CONTROL
# What an HTTP header can carry at all (no NUL, CR or LF).
HEADER_SAFE = [n for n in BAD if not any(c in n for c in "\x00\r\n") and n.isascii()]
EXPANSION = re.compile(r"\$\{([^}]*)\}")


def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    return http_json("POST", url, body, headers)


def assert_no_injected_expansion(config_yaml: str) -> None:
    """The only `${...}` in a rendered config is the file provider reading the keep-list the agent writes."""
    for match in EXPANSION.finditer(config_yaml):
        assert re.fullmatch(r"file:(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+\.yaml", match.group(1)), match.group(0)
    assert "$$" not in config_yaml and "$(" not in config_yaml
    assert "${env:" not in config_yaml and "${file:/etc" not in config_yaml


def test_the_api_refuses_bad_names_naming_the_field(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    good_deployment = {"name": "ok", "namespace": "default", "template": "process-baseline-v1"}
    good_experiment = {
        "name": "ok",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1",
        "target_namespaces": ["default"],
        "start": False,
    }
    for bad in BAD:
        for name in ("name", "namespace", "template"):
            body = {**good_deployment, name: bad, "allow_empty_namespace": True}
            assert_problem(*post(f"{api}/api/v1/pipeline-deployments", body, operator()), 400, name)
        for name in ("baseline_pipeline", "candidate_pipeline"):
            body = {**good_experiment, name: bad}
            assert_problem(*post(f"{api}/api/v1/experiments", body, operator()), 400, name)
        for name in ("target_namespaces", "target_hosts"):
            body = {**good_experiment, name: [bad]}
            assert_problem(*post(f"{api}/api/v1/experiments", body, operator()), 400, name)
        for name in ("host_id", "namespace"):
            body = {"type": "health", name: bad}
            assert_problem(*post(f"{api}/api/v1/tasks", body, operator()), 400, name)
        if bad not in TRAVERSAL:
            # Display text: refused when it holds control characters or an expansion's opening.
            body = {**good_experiment, "name": bad}
            assert_problem(*post(f"{api}/api/v1/experiments", body, operator()), 400, "name")
    for bad in CONTROL:
        body = {**good_experiment, "critical_processes": ["sshd", bad]}
        if bad != "bidi\u202eexe":  # a format character is printable in a process name, and harmless
            assert_problem(*post(f"{api}/api/v1/experiments", body, operator()), 400, "critical_processes")


def test_an_experiment_name_is_display_text_stored_verbatim(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    for name in TRAVERSAL:
        body = {
            "name": name,
            "baseline_pipeline": "process-baseline-v1",
            "candidate_pipeline": "process-topk-v1",
            "target_namespaces": ["default"],
            "start": False,
        }
        status, created, _ = post(f"{api}/api/v1/experiments", body, operator())
        assert status == 201, created
        status, got, _ = http_json("GET", f"{api}/api/v1/experiments/{created['id']}", headers=operator())
        assert status == 200 and got["name"] == name


def test_agent_supplied_names_are_refused(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    token = issue_token(secured_stack.api, "inj-1")
    for bad in HEADER_SAFE:
        assert_problem(*post(f"{api}/api/v1/agent/heartbeat", {}, agent(bad, token)), 400, "X-Agent-Host-ID")
        assert_problem(*post(f"{api}/api/v1/agent/heartbeat", {"namespace": bad}, agent("inj-1", token)), 400)
    for bad in BAD:
        assert_problem(*post(f"{api}/api/v1/agent/heartbeat", {"namespace": bad}, agent("inj-1", token)), 400)


def test_ids_in_paths_are_never_files_or_templates(secured_stack: Stack) -> None:
    api = secured_stack.api.url
    for bad in BAD:
        quoted = urllib.parse.quote(bad, safe="")
        for path in (
            f"/api/v1/agents/{quoted}",
            f"/api/v1/pipeline-deployments/{quoted}",
            f"/api/v1/experiments/{quoted}",
            f"/api/v1/experiments/{quoted}/analysis",
            f"/static/{quoted}",
            f"/static/0123456789ab/{quoted}",
        ):
            status, body, headers = http_json("GET", api + path, headers=operator())
            assert status in (400, 404), (path, status, body)
            assert_problem(status, body, headers, status)
        status, body, headers = post(f"{api}/api/v1/agents/{quoted}/token", None, operator())
        assert status in (400, 404, 405), (bad, status, body)
    for raw in ("/static/../../../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/../../etc/passwd"):
        status, body, _ = http_json("GET", api + raw)
        assert status == 404 and "root:" not in str(body), (raw, status)
    # No spelling of a path reaches an operator endpoint under the agent rules, or without the token.
    for raw in ("/api/v1/agent/..%2Fagents", "/api/v1/agent/../agents", "/api/v1/agent/%2E%2E/agents"):
        status, body, _ = http_json("GET", api + raw, headers={"X-Agent-Host-ID": "inj-2"})
        assert status in (401, 404), (raw, status, body)


def test_the_generator_refuses_bad_names_naming_the_field(secured_stack: Stack) -> None:
    gen = secured_stack.generator.url
    render = f"{gen}/api/v1/render"
    for bad in BAD:
        assert_problem(*post(render, {"template": bad}, operator()), 400, "template")
        assert_problem(
            *post(render, {"template": "process-topk-v1", "variant": bad}, operator()), 400, "variant"
        )
        status, body, headers = post(
            render, {"template": "process-baseline-v1", "experiment_id": bad}, operator()
        )
        assert_problem(status, body, headers, 400)
        assert body["field"].endswith("experiment_id")
        status, body, headers = post(
            render, {"template": "process-topk-v1", "parameters": {bad: 1}}, operator()
        )
        assert_problem(status, body, headers, 400)
        # A name with NUL is refused as JSON no Phoenix text may hold, before its meaning is looked at.
        assert ("unknown parameter" if "\x00" not in bad else "a key in 'parameters' holds NUL") in body[
            "detail"
        ]
        status, body, headers = post(f"{gen}/api/v1/generate", {"experiment_id": bad}, operator())
        assert_problem(status, body, headers, 400, "experiment_id")
    for path in (
        "/var/lib/phoenix-agent/../../../etc/passwd",
        "/var/lib/phoenix-agent/keep/../../x.yaml",
        "/x//y.yaml",
        "/x/.hidden.yaml",
        "/x/${file:/etc/passwd}",
        "/x/{{7*7}}.yaml",
        "/x/a\n.yaml",
    ):
        body = {"template": "process-topk-v1", "parameters": {"keep_list_path": path}}
        assert_problem(*post(render, body, operator()), 400, "parameters.keep_list_path")


def test_process_names_reach_the_collector_config_escaped(secured_stack: Stack) -> None:
    """Process names are any text; in a config they are OTTL string literals with `$` written \\u0024."""
    gen, api = secured_stack.generator.url, secured_stack.api.url
    names = [*INJECTION, *TRAVERSAL[:3], "sshd"]
    body = {"template": "process-intelligent-v1", "parameters": {"critical_processes": names}}
    status, rendered, _ = post(f"{gen}/api/v1/render", body, operator())
    assert status == 200, rendered
    assert_no_injected_expansion(rendered["config_yaml"])
    assert "\\u0024{env:HOME}" in rendered["config_yaml"]
    assert rendered["keep_list"]["critical"] == sorted(set(names))

    # Through the API: a deployment renders with the operator token and stores the same safe config.
    body = {
        "name": "inj",
        "namespace": "default",
        "template": "process-intelligent-v1",
        "parameters": {"critical_processes": names},
        "allow_empty_namespace": True,
    }
    status, created, _ = post(f"{api}/api/v1/pipeline-deployments", body, operator())
    assert status == 201, created
    status, deployment, _ = http_json(
        "GET", f"{api}/api/v1/pipeline-deployments/{created['id']}", headers=operator()
    )
    assert status == 200
    assert_no_injected_expansion(deployment["config_yaml"])

    # And an experiment the generator reads back from the API (with its token) to render both variants.
    body = {
        "name": "inj",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "target_namespaces": ["default"],
        "critical_processes": names,
        "start": False,
    }
    status, experiment, _ = post(f"{api}/api/v1/experiments", body, operator())
    assert status == 201, experiment
    status, generated, _ = post(f"{gen}/api/v1/generate", {"experiment_id": experiment["id"]}, operator())
    assert status == 200, generated
    for variant in ("baseline", "candidate"):
        assert_no_injected_expansion(generated[variant]["config_yaml"])
