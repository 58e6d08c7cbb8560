"""The `phoenix` CLI against a real control plane: agents, settings, tokens and exit codes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port
from tests.support.cli import clean_env, column_of, register, row_of, run_cli
from tests.support.services import Service, start_api

TOKEN = "cli-test-token-7f3a9c"


@pytest.fixture
def env(tmp_path: Path, api: Service) -> dict[str, str]:
    return clean_env(tmp_path / "home", PHOENIX_API_URL=api.url)


def test_agents_list_and_show_as_tables_and_json(api: Service, env: dict[str, str]) -> None:
    register(api.url, "web-1", "prod")
    register(api.url, "db-1", "db", labels={"tier": "data"})

    result = run_cli(env, "agents", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    for host, namespace in (("web-1", "prod"), ("db-1", "db")):
        row = row_of(lines, host)
        # Aligned columns: each value starts under its header.
        assert row[column_of(header, "NAMESPACE") :].split()[0] == namespace
        assert row[column_of(header, "NAMESPACE") - 1] == " "
        assert row[column_of(header, "STATUS") :].startswith("healthy")
        assert row[column_of(header, "PIPELINE") :].startswith("process-baseline-v1")

    listed = json.loads(run_cli(env, "agents", "list", "--json").stdout)
    assert {a["host_id"] for a in listed["agents"]} == {"web-1", "db-1"}
    # The global flag works before the subcommand too, and filters reach the API.
    only_db = json.loads(run_cli(env, "--json", "agents", "list", "--namespace", "db").stdout)
    assert [a["host_id"] for a in only_db["agents"]] == ["db-1"]

    shown = run_cli(env, "agents", "show", "db-1")
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines() if " " in line)
    assert fields["namespace"].strip() == "db"
    assert fields["labels"].strip() == "tier=data"
    assert fields["memory"].strip() == "4.0 GiB"
    assert fields["restarts"].strip() == "2"
    assert json.loads(run_cli(env, "agents", "show", "db-1", "--json").stdout)["host_id"] == "db-1"


def test_empty_fleet_says_so(env: dict[str, str]) -> None:
    result = run_cli(env, "agents", "list")
    assert result.returncode == 0
    assert result.stdout.strip() == "No agents registered."


def test_unknown_agent_is_exit_3_with_the_problem_detail(env: dict[str, str]) -> None:
    result = run_cli(env, "agents", "show", "no-such-host")
    assert result.returncode == 3
    assert result.stderr == "phoenix: error: agent 'no-such-host' does not exist\n"
    assert result.stdout == ""


def test_an_id_cannot_escape_its_path(env: dict[str, str]) -> None:
    result = run_cli(env, "agents", "show", "../experiments")
    assert result.returncode == 3
    assert "does not exist" in result.stderr


def test_unreachable_api_is_exit_5_with_a_clear_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(clean_env(tmp_path / "home", PHOENIX_API_URL=url), "agents", "list")
    assert result.returncode == 5
    assert result.stderr.strip() == (
        f"phoenix: cannot reach the control plane at {url} "
        "(connection refused); is it running? start it with 'make dev-up'"
    )


def test_server_error_is_exit_4(api: Service, env: dict[str, str]) -> None:
    # The `api` fixture's generator URL points at a closed port: the API answers 502.
    register(api.url, "web-1", "prod")
    result = run_cli(
        env, "deploy", "create", "--name", "d", "--namespace", "prod", "--template", "process-baseline-v1"
    )
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("phoenix: error: ")
    assert "generator" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_are_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    assert run_cli(env).returncode == 2
    assert run_cli(env, "agents").returncode == 2
    bad_param = run_cli(
        env, "deploy", "create", "--name", "d", "--namespace", "p", "--template", "t", "--param", "novalue"
    )
    assert bad_param.returncode == 2 and "expected key=value" in bad_param.stderr
    twice = run_cli(
        env,
        "deploy",
        "create",
        "--name",
        "d",
        "--namespace",
        "p",
        "--template",
        "t",
        "--param",
        "k=1",
        "--param",
        "k=2",
    )
    assert twice.returncode == 2 and "--param k is given twice" in twice.stderr
    missing = run_cli(env, "--cli-config", str(tmp_path / "nope.yaml"), "agents", "list")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_url = run_cli(env, "--api-url", "localhost:8080", "agents", "list")
    assert bad_url.returncode == 2 and "must be an http:// or https:// URL" in bad_url.stderr
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("api_url: http://x\nsurprise: 1\n")
    unknown_key = run_cli(env, "--cli-config", str(bad_file), "agents", "list")
    assert unknown_key.returncode == 2 and "unknown key 'surprise'" in unknown_key.stderr


def test_help_documents_the_exit_codes(env: dict[str, str]) -> None:
    result = run_cli(env, "--help")
    assert result.returncode == 0
    for line in (
        "0  ok",
        "1  the command ran but the outcome is negative",
        "2  usage error",
        "3  the API answered 4xx",
        "4  the API answered 5xx",
        "5  the API is unreachable",
    ):
        assert line in result.stdout


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[Service]:
    api = start_api(database_url, tmp_path, env={"PHOENIX_API_TOKEN": TOKEN}, name="secured")
    yield api
    api.stop()


def test_token_from_flag_environment_or_file_and_never_printed(secured: Service, tmp_path: Path) -> None:
    register(secured.url, "web-1", "prod")
    home = tmp_path / "home"
    bare = clean_env(home, PHOENIX_API_URL=secured.url)

    denied = run_cli(bare, "agents", "list")
    assert denied.returncode == 3
    assert "API token is required" in denied.stderr and "PHOENIX_API_TOKEN" in denied.stderr

    outputs = [denied]
    by_env = run_cli({**bare, "PHOENIX_API_TOKEN": TOKEN}, "agents", "list")
    by_flag = run_cli({**bare, "PHOENIX_API_TOKEN": "wrong"}, "--token", TOKEN, "agents", "list")
    outputs += [by_env, by_flag]
    assert by_env.returncode == 0, by_env.stderr
    assert by_flag.returncode == 0, by_flag.stderr  # the flag wins over the environment

    config = home / ".config" / "phoenix" / "cli.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"api_url: {secured.url}\ntoken: {TOKEN}\n")
    os.chmod(config, 0o644)
    from_file = run_cli(clean_env(home), "agents", "list")
    outputs.append(from_file)
    assert from_file.returncode == 0, from_file.stderr
    assert "web-1" in from_file.stdout
    assert "readable by other users" in from_file.stderr
    os.chmod(config, 0o600)
    quiet = run_cli(clean_env(home), "agents", "list")
    outputs.append(quiet)
    assert quiet.returncode == 0 and quiet.stderr == ""

    # The environment wins over the file: a wrong token in the environment is refused.
    env_wins = run_cli(clean_env(home, PHOENIX_API_TOKEN="wrong"), "agents", "list")
    outputs.append(env_wins)
    assert env_wins.returncode == 3

    # An explicit --cli-config is read instead of the default file.
    other = tmp_path / "other.yaml"
    other.write_text(f"api_url: {secured.url}\ntoken: wrong\n")
    os.chmod(other, 0o600)
    explicit = run_cli(clean_env(home), "--cli-config", str(other), "agents", "list")
    outputs.append(explicit)
    assert explicit.returncode == 3

    for result in outputs:
        assert TOKEN not in result.stdout and TOKEN not in result.stderr
