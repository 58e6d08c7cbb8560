"""`phoenix destinations` and the destination flags of deploy and experiment: parsing, bodies, views.

The CLI runs in process with the HTTP call replaced by a recording fake; header values never reach the output.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from phoenix_cli import views
from phoenix_cli.cli import build_parser, main
from phoenix_cli.client import Client
from phoenix_cli.commands import destination_body

SECRET = "Bearer s3cr3t-value-9f1c"
MASK = "********"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

READ = {
    "name": "prod-mimir",
    "type": "prometheus_remote_write",
    "endpoint": "https://mimir.example.com/api/v1/push",
    "headers": {"X-Scope-OrgID": MASK, "Authorization": MASK},
    "tls": {"insecure": False, "insecure_skip_verify": False, "ca_pem": PEM},
    "compression": "snappy",
    "timeout_seconds": 10.0,
    "namespaces": ["web", "api"],
    "created_at": "2025-01-02T03:04:05+00:00",
    "updated_at": "2025-01-02T03:04:05+00:00",
}


@dataclass
class Call:
    method: str
    path: str
    body: Any
    timeout: float


@dataclass
class FakeApi:
    """Answers by (method, path); records every call with the client's HTTP timeout."""

    answers: dict[tuple[str, str], Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def request(self, client: Client, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        self.calls.append(Call(method, path, body, client.timeout))
        return self.answers.get((method, path))


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Phoenix variable and no config file of the person running the tests."""
    import os

    for name in [n for n in os.environ if n.startswith("PHOENIX_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    api = FakeApi()

    def request(client: Client, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        return api.request(client, method, path, body, query)

    monkeypatch.setattr(Client, "request", request)
    yield api


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main() as the console script runs it; usage errors exit through SystemExit like argparse does."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def fields(text: str) -> dict[str, str]:
    """A key/value view as a mapping (keys are one word here)."""
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line)


def parse(*argv: str) -> Any:
    args = build_parser().parse_args(list(argv))
    from phoenix_cli.cli import _check_params

    _check_params(args)
    return args


CREATE = (
    "destinations",
    "create",
    "prod-mimir",
    "--type",
    "prometheus_remote_write",
    "--endpoint",
    "https://mimir.example.com/api/v1/push",
)


# --- parsing: the body sent -------------------------------------------------------------------


def test_every_flag_lands_in_the_body(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    args = parse(
        *CREATE,
        "--header",
        f"Authorization: {SECRET}",
        "--header",
        "X-Scope-OrgID:team-a",
        "--compression",
        "snappy",
        "--timeout",
        "30s",
        "--ca-file",
        str(ca),
        "--insecure-skip-verify",
    )
    assert destination_body(args) == {
        "name": "prod-mimir",
        "type": "prometheus_remote_write",
        "endpoint": "https://mimir.example.com/api/v1/push",
        # Spaces around the colon are not part of the name or the value.
        "headers": {"Authorization": SECRET, "X-Scope-OrgID": "team-a"},
        "tls": {"ca_pem": PEM, "insecure_skip_verify": True},
        "compression": "snappy",
        "timeout": "30s",
    }


def test_flags_left_out_are_left_to_the_api() -> None:
    assert destination_body(parse(*CREATE)) == {
        "name": "prod-mimir",
        "type": "prometheus_remote_write",
        "endpoint": "https://mimir.example.com/api/v1/push",
    }
    grpc = parse(
        "destinations", "create", "otel", "--type", "otlp_grpc", "--endpoint", "otel:4317", "--insecure"
    )
    assert destination_body(grpc)["tls"] == {"insecure": True}


@pytest.mark.parametrize(("given", "sent"), [("10", 10.0), ("2.5", 2.5), ("1m", "1m"), ("nan", "nan")])
def test_a_bare_number_of_seconds_is_sent_as_a_number(given: str, sent: Any) -> None:
    assert destination_body(parse(*CREATE, "--timeout", given))["timeout"] == sent


def test_timeout_after_create_is_the_destinations_before_it_the_http_calls(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers[("POST", "/api/v1/destinations")] = READ
    fake.answers[("GET", "/api/v1/destinations")] = {"destinations": []}
    assert run(capsys, "--timeout", "7", *CREATE, "--timeout", "20s")[0] == 0
    assert fake.calls[0].body["timeout"] == "20s"
    assert fake.calls[0].timeout == 7.0
    # Elsewhere --timeout after the command is still the HTTP timeout.
    assert run(capsys, "destinations", "list", "--timeout", "3")[0] == 0
    assert fake.calls[1].timeout == 3.0


def test_type_and_endpoint_are_required_and_type_and_compression_are_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "destinations", "create", "x", "--endpoint", "http://a")
    assert code == 2 and "--type" in err
    code, _, err = run(capsys, "destinations", "create", "x", "--type", "kafka", "--endpoint", "http://a")
    assert code == 2 and "invalid choice: 'kafka'" in err
    code, _, err = run(capsys, *CREATE, "--compression", "lz4")
    assert code == 2 and "invalid choice: 'lz4'" in err


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (f"Authorization {SECRET}", "expected 'Name: value'"),
        (f": {SECRET}", "expected 'Name: value'"),
        # The colon inside the secret is not the separator the user meant: no piece of it becomes a name.
        ("Authorization Bearer s3cr3t:value-9f1c", "a header name is letters, digits"),
        ("Authorization:   ", "the value of header 'Authorization' is empty"),
    ],
)
def test_a_malformed_header_is_a_usage_error_that_never_repeats_it(
    capsys: pytest.CaptureFixture[str], header: str, message: str
) -> None:
    code, out, err = run(capsys, *CREATE, "--header", header)
    assert code == 2
    assert message in err
    assert "s3cr3t" not in out + err


def test_the_same_header_twice_is_a_mistake_whatever_its_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, *CREATE, "--header", f"Authorization: {SECRET}", "--header", "authorization: x"
    )
    assert code == 2 and "--header authorization is given twice" in err
    assert "s3cr3t" not in out + err


def test_an_unreadable_ca_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *CREATE, "--ca-file", str(tmp_path / "missing.pem"))
    assert code == 2 and f"cannot read {tmp_path / 'missing.pem'}: No such file or directory" in err
    binary = tmp_path / "ca.der"
    binary.write_bytes(b"\x30\x82\xff\xfe")
    code, _, err = run(capsys, *CREATE, "--ca-file", str(binary))
    assert code == 2 and "is not a PEM file" in err


# --- what is printed --------------------------------------------------------------------------


def test_create_prints_the_destination_as_the_api_returns_it(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers[("POST", "/api/v1/destinations")] = READ
    code, out, err = run(capsys, *CREATE, "--header", f"Authorization: {SECRET}")
    assert (code, err) == (0, "")
    assert fake.calls[0].body["headers"] == {"Authorization": SECRET}
    first, _, rest = out.partition("\n")
    assert first == "destination prod-mimir created"
    shown = fields(rest)
    assert shown["headers"] == f"Authorization={MASK}, X-Scope-OrgID={MASK}"
    assert shown["endpoint"] == READ["endpoint"]
    assert shown["tls"] == "CA from the given PEM"
    assert shown["timeout"] == "10s"
    assert shown["namespaces"] == "web, api"
    assert SECRET not in out
    assert fields(views.destination_view({**READ, "timeout_seconds": 2.5}))["timeout"] == "2.5s"
    assert fields(views.destination_view({**READ, "timeout_seconds": 90.0}))["timeout"] == "1m30s"

    code, out, _ = run(capsys, *CREATE, "--header", f"Authorization: {SECRET}", "--json")
    assert code == 0 and json.loads(out) == READ and SECRET not in out


def test_list_is_a_table_of_name_type_endpoint_and_namespaces(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {**READ, "name": "otel", "type": "otlp_http", "endpoint": "http://otel:4318", "namespaces": []}
    fake.answers[("GET", "/api/v1/destinations")] = {"destinations": [READ, other]}
    code, out, _ = run(capsys, "destinations", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "TYPE", "ENDPOINT", "NAMESPACES"]
    start = header.index("NAMESPACES")
    assert rows[0].split()[:3] == ["prod-mimir", "prometheus_remote_write", READ["endpoint"]]
    assert rows[0][start:] == "web, api"
    assert rows[1][start:] == "-"
    assert rows[1][header.index("ENDPOINT") :].split()[0] == "http://otel:4318"

    fake.answers[("GET", "/api/v1/destinations")] = {"destinations": []}
    assert run(capsys, "destinations", "list")[1] == "No destinations.\n"
    assert json.loads(run(capsys, "destinations", "list", "--json")[1]) == {"destinations": []}


def test_show_and_delete_escape_the_name_in_the_path(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers[("GET", "/api/v1/destinations/a%2F..%2Fb")] = READ
    code, out, _ = run(capsys, "destinations", "show", "a/../b")
    assert code == 0 and out.startswith("name         prod-mimir\n")
    code, out, _ = run(capsys, "destinations", "delete", "a/../b")
    assert (code, out) == (0, "destination a/../b deleted\n")
    assert [(c.method, c.path) for c in fake.calls] == [
        ("GET", "/api/v1/destinations/a%2F..%2Fb"),
        ("DELETE", "/api/v1/destinations/a%2F..%2Fb"),
    ]
    # 204 has no body: with --json there is nothing to print.
    assert run(capsys, "destinations", "delete", "x", "--json")[:2] == (0, "")


def test_the_apis_refusal_is_one_line_with_its_detail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real client: a problem+json 409 becomes exit 3 and `phoenix: error: <detail>`."""
    problem = {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "destination 'prod-mimir' is used by the active deployment dep-1 of namespace web",
    }

    def urlopen(request: urllib.request.Request, timeout: float) -> Any:
        headers = Message()
        headers["Content-Type"] = "application/problem+json"
        raise urllib.error.HTTPError(
            request.full_url, 409, "Conflict", headers, io.BytesIO(json.dumps(problem).encode())
        )

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    code, out, err = run(capsys, "destinations", "delete", "prod-mimir")
    assert (code, out) == (3, "")
    assert err == f"phoenix: error: {problem['detail']}\n"


# --- deployments and experiments name a destination ----------------------------------------------


DEPLOY = ("deploy", "create", "--name", "d", "--namespace", "web", "--template", "process-topk-v1")


@pytest.mark.parametrize(
    ("answer", "suffix"),
    [
        ({"destination": "prod-mimir"}, "; ships to prod-mimir"),
        ({"destination": None}, "; local only (not shipped)"),
        ({}, ""),  # an API from before destinations: nothing claimed
    ],
)
def test_deploy_create_sends_the_destination_and_says_where_it_ships(
    fake: FakeApi, capsys: pytest.CaptureFixture[str], answer: dict[str, Any], suffix: str
) -> None:
    fake.answers[("POST", "/api/v1/pipeline-deployments")] = {
        "id": "dep-1",
        "template": "process-topk-v1",
        "namespace": "web",
        "hosts": 2,
        **answer,
    }
    code, out, _ = run(capsys, *DEPLOY, "--destination", "prod-mimir")
    assert code == 0
    assert fake.calls[-1].body["destination"] == "prod-mimir"
    assert out == f"deployment dep-1 created: process-topk-v1 on namespace web, sent to 2 host(s){suffix}\n"


def test_deploy_create_keeps_or_drops_the_destination(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """Left out, the API keeps the namespace's destination; --no-destination sends null: ship nowhere."""
    fake.answers[("POST", "/api/v1/pipeline-deployments")] = {"id": "dep-1"}
    assert run(capsys, *DEPLOY)[0] == 0
    assert "destination" not in fake.calls[0].body
    assert run(capsys, *DEPLOY, "--no-destination")[0] == 0
    assert fake.calls[1].body["destination"] is None
    code, _, err = run(capsys, *DEPLOY, "--no-destination", "--destination", "x")
    assert code == 2 and "not allowed with argument" in err


def test_experiment_create_sends_the_candidate_destination(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers[("POST", "/api/v1/experiments")] = {"id": "exp-1", "phase": "pending"}
    base = (
        "experiment",
        "create",
        "--name",
        "e",
        "--baseline",
        "b",
        "--candidate",
        "c",
        "--namespace",
        "web",
        "--no-start",
    )
    assert run(capsys, *base, "--candidate-destination", "prod-mimir")[0] == 0
    assert run(capsys, *base)[0] == 0
    assert fake.calls[0].body["candidate_destination"] == "prod-mimir"
    assert "candidate_destination" not in fake.calls[1].body


def test_deployment_views_show_the_destination_only_when_the_api_does() -> None:
    shipped = {"id": "dep-1", "name": "d", "namespace": "web", "destination": "prod-mimir"}
    local = {"id": "dep-2", "name": "e", "namespace": "api", "destination": None}
    header, *rows = views.deployments_table([shipped, local]).splitlines()
    start = header.index("DESTINATION")
    assert (rows[0][start:], rows[1][start:]) == ("prod-mimir", "local only")
    assert fields(views.deployment_view(shipped))["destination"] == "ships to prod-mimir"
    assert fields(views.deployment_view(local))["destination"] == "local only (not shipped)"
    # An API from before destinations: not known, so not claimed.
    assert fields(views.deployment_view({"id": "dep-3"}))["destination"] == "-"


def test_experiment_view_says_where_the_candidate_ships() -> None:
    def ships(experiment: dict[str, Any]) -> str:
        return fields(views.experiment_view(experiment))["shipping"]

    assert ships({"candidate_destination": "prod-mimir"}) == "candidate to prod-mimir"
    assert ships({"candidate_destination": None}) == "candidate in shadow (measured, not shipped)"
    assert ships({}) == "-"
    # The key is no wider than the others: the view's columns stay where they were.
    assert views.experiment_view({}).splitlines()[1].startswith("phase          None")
