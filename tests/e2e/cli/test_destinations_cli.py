"""`phoenix destinations` against the API and the generator: header values never printed, shipping shown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port
from tests.support.cli import clean_env, cli_json, column_of, register, row_of, run_cli
from tests.support.services import Stack

SECRET = "Bearer s3cr3t-e2e-4d2a"
TENANT = "team-a-tenant-77"
MASK = "********"


@pytest.fixture
def env(tmp_path: Path, stack: Stack) -> dict[str, str]:
    return clean_env(
        tmp_path / "home", PHOENIX_API_URL=stack.api.url, PHOENIX_GENERATOR_URL=stack.generator.url
    )


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A self-signed certificate, so that the API has a PEM that parses."""
    cert = tmp_path / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(cert),
            "-subj",
            "/CN=phoenix-test-ca",
            "-days",
            "2",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert


def fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(None, 1) for line in text.splitlines() if " " in line)}


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 3) -> str:
    """The API's refusal as the CLI prints it: nothing on stdout, one `phoenix: error:` line on stderr."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("phoenix: error: "), result.stderr
    return lines[0]


def test_create_list_show_delete_and_no_header_value_is_ever_printed(
    env: dict[str, str], ca_file: Path
) -> None:
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(env, *args)
        outputs.append(result.stdout + result.stderr)
        return result

    created = cli(
        "destinations",
        "create",
        "prod-mimir",
        "--type",
        "prometheus_remote_write",
        "--endpoint",
        "https://mimir.example.com/api/v1/push",
        "--header",
        f"Authorization: {SECRET}",
        "--header",
        f"X-Scope-OrgID: {TENANT}",
        "--timeout",
        "30s",
        "--ca-file",
        str(ca_file),
    )
    assert created.returncode == 0, created.stderr
    first, _, view = created.stdout.partition("\n")
    assert first == "destination prod-mimir created"
    shown = fields(view)
    assert shown["headers"] == f"Authorization={MASK}, X-Scope-OrgID={MASK}"
    assert shown["type"] == "prometheus_remote_write"
    assert shown["timeout"] == "30s"
    assert shown["tls"] == "CA from the given PEM"
    assert shown["namespaces"] == "-"

    grpc = cli(
        "destinations",
        "create",
        "otel",
        "--type",
        "otlp_grpc",
        "--endpoint",
        "otel-gateway:4317",
        "--insecure",
        "--compression",
        "gzip",
        "--timeout",
        "5",
        "--json",
    )
    assert grpc.returncode == 0, grpc.stderr
    grpc_read = json.loads(grpc.stdout)
    assert (grpc_read["timeout_seconds"], grpc_read["compression"]) == (5.0, "gzip")
    assert grpc_read["tls"]["insecure"] is True and grpc_read["headers"] == {}

    listed = cli("destinations", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "ENDPOINT", "NAMESPACES"]
    assert row_of(rows, "prod-mimir").split() == [
        "prod-mimir",
        "prometheus_remote_write",
        "https://mimir.example.com/api/v1/push",
        "-",
    ]
    assert row_of(rows, "otel").split() == ["otel", "otlp_grpc", "otel-gateway:4317", "-"]

    as_json = cli("destinations", "show", "prod-mimir", "--json")
    read = json.loads(as_json.stdout)
    assert read["headers"] == {"Authorization": MASK, "X-Scope-OrgID": MASK}
    assert read["timeout_seconds"] == 30.0
    assert {d["name"] for d in json.loads(cli("--json", "destinations", "list").stdout)["destinations"]} == {
        "prod-mimir",
        "otel",
    }
    assert fields(cli("destinations", "show", "otel").stdout)["tls"] == "plain text (no TLS)"

    deleted = cli("destinations", "delete", "otel")
    assert (deleted.returncode, deleted.stdout) == (0, "destination otel deleted\n")
    one_line_error(cli("destinations", "show", "otel"))
    assert [row.split()[0] for row in cli("destinations", "list").stdout.splitlines()[1:]] == ["prod-mimir"]

    for text in outputs:
        assert SECRET not in text and "s3cr3t" not in text and TENANT not in text


def test_bad_input_is_one_line_naming_the_field(env: dict[str, str]) -> None:
    base = ("destinations", "create")
    plain = one_line_error(
        run_cli(env, *base, "web", "--type", "otlp_http", "--endpoint", "http://otel:4318", "--insecure")
    )
    assert "tls.insecure" in plain
    assert "'name'" in one_line_error(
        run_cli(env, *base, "Prod_Mimir", "--type", "otlp_http", "--endpoint", "http://otel:4318")
    )
    assert "timeout" in one_line_error(
        run_cli(
            env, *base, "slow", "--type", "otlp_http", "--endpoint", "http://otel:4318", "--timeout", "10m"
        )
    )
    assert "endpoint" in one_line_error(
        run_cli(env, *base, "nowhere", "--type", "otlp_http", "--endpoint", "otel:4318")
    )
    leaked = run_cli(
        env,
        *base,
        "remote",
        "--type",
        "prometheus_remote_write",
        "--endpoint",
        "https://m/push",
        "--compression",
        "gzip",
        "--header",
        f"Authorization: {SECRET}",
    )
    assert "compression" in one_line_error(leaked) and "s3cr3t" not in leaked.stderr

    assert (
        run_cli(env, *base, "twice", "--type", "otlp_http", "--endpoint", "http://otel:4318").returncode == 0
    )
    one_line_error(run_cli(env, *base, "twice", "--type", "otlp_http", "--endpoint", "http://otel:4318"))
    one_line_error(run_cli(env, "destinations", "show", "no-such-destination"))
    one_line_error(run_cli(env, "destinations", "delete", "no-such-destination"))
    # Refused before any call: the CLI's own usage errors (exit 2).
    usage = run_cli(env, *base, "x", "--type", "otlp_http", "--endpoint", "http://a", "--header", SECRET)
    assert usage.returncode == 2 and "expected 'Name: value'" in usage.stderr and "s3cr3t" not in usage.stderr


def test_deployments_and_experiments_name_where_they_ship(stack: Stack, env: dict[str, str]) -> None:
    register(stack.api.url, "web-1", "prod")
    endpoint = f"http://127.0.0.1:{free_port()}"
    created = run_cli(
        env,
        "destinations",
        "create",
        "prod-otlp",
        "--type",
        "otlp_http",
        "--endpoint",
        endpoint,
        "--header",
        f"Authorization: {SECRET}",
    )
    assert created.returncode == 0, created.stderr
    deploy = ("deploy", "create", "--namespace", "prod", "--template", "process-baseline-v1")

    shipped = run_cli(env, *deploy, "--name", "ship", "--destination", "prod-otlp")
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.rstrip().endswith("; ships to prod-otlp")
    dep_id = shipped.stdout.split()[1]
    assert cli_json(env, "deploy", "show", dep_id)["destination"] == "prod-otlp"
    assert fields(run_cli(env, "deploy", "show", dep_id).stdout)["destination"] == "ships to prod-otlp"
    listed = run_cli(env, "deploy", "list").stdout.splitlines()
    assert row_of(listed, dep_id)[column_of(listed[0], "DESTINATION") :] == "prod-otlp"
    destinations = run_cli(env, "destinations", "list").stdout.splitlines()
    assert row_of(destinations, "prod-otlp")[column_of(destinations[0], "NAMESPACES") :] == "prod"

    # An active deployment ships there: the API refuses to delete it, and says why in one line.
    one_line_error(run_cli(env, "destinations", "delete", "prod-otlp"))
    # Left out, the destination of the namespace's active deployment is kept.
    assert cli_json(env, *deploy, "--name", "keep")["destination"] == "prod-otlp"
    one_line_error(run_cli(env, *deploy, "--name", "lost", "--destination", "no-such-destination"))

    local = run_cli(env, *deploy, "--name", "local", "--no-destination")
    assert local.returncode == 0, local.stderr
    assert local.stdout.rstrip().endswith("; local only (not shipped)")
    local_id = local.stdout.split()[1]
    listed = run_cli(env, "deploy", "list").stdout.splitlines()
    assert row_of(listed, local_id)[column_of(listed[0], "DESTINATION") :] == "local only"
    destinations = run_cli(env, "destinations", "list").stdout.splitlines()
    assert row_of(destinations, "prod-otlp")[column_of(destinations[0], "NAMESPACES") :] == "-"

    experiment = cli_json(
        env,
        "experiment",
        "create",
        "--name",
        "shipped candidate",
        "--namespace",
        "prod",
        "--baseline",
        "process-baseline-v1",
        "--candidate",
        "process-topk-v1",
        "--candidate-destination",
        "prod-otlp",
        "--no-start",
    )
    assert experiment["candidate_destination"] == "prod-otlp"
    status = run_cli(env, "experiment", "status", experiment["id"])
    assert fields(status.stdout)["shipping"] == "candidate to prod-otlp"
    assert run_cli(env, "experiment", "stop", experiment["id"]).returncode == 0

    deleted = run_cli(env, "destinations", "delete", "prod-otlp")
    assert (deleted.returncode, deleted.stdout) == (0, "destination prod-otlp deleted\n"), deleted.stderr
    one_line_error(run_cli(env, "destinations", "show", "prod-otlp"))
