"""Agent settings: the operations guide's file works, every error names its field and exits 2 in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentSettings, default_binary, load_settings
from phoenix_common.settings import SettingsError
from tests.support.agent_config import GUIDE, write


def test_operations_guide_config_loads_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(str(write(tmp_path, GUIDE)), env={})
    assert settings.api_url == "https://phoenix.example.com:8080"
    assert settings.host_id == "myhost-1700000000"
    assert settings.poll_interval == 30.0
    assert settings.heartbeat_interval == 15.0
    assert settings.namespace == "default"
    assert settings.state_dir == Path("/var/lib/phoenix-agent")
    assert settings.collector.supervisor == "systemd"
    assert settings.collector.unit == "otelcol.service"
    assert settings.collector.config_path == Path("/etc/otelcol/collector.yaml")
    assert settings.collector.health_url == "http://127.0.0.1:13133/"
    assert settings.collector.apply_timeout == 30.0
    assert settings.collector.binary == default_binary()


def test_environment_overrides_file_including_nested_sections(tmp_path: Path) -> None:
    env = {
        "PHOENIX_AGENT_POLL_INTERVAL": "5s",
        "PHOENIX_AGENT_LABELS": "{role: db, zone: a}",
        "PHOENIX_AGENT_COLLECTOR__BINARY": "/opt/otel/otelcol",
        "PHOENIX_AGENT_COLLECTOR__SUPERVISOR": "process",
        "PHOENIX_AGENT_COLLECTOR__APPLY_TIMEOUT": "1m",
    }
    settings = load_settings(str(write(tmp_path, GUIDE)), env=env)
    assert settings.poll_interval == 5.0
    assert settings.labels == {"role": "db", "zone": "a"}
    assert settings.collector.binary == "/opt/otel/otelcol"
    assert settings.collector.supervisor == "process"
    assert settings.collector.apply_timeout == 60.0


def test_config_path_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GUIDE.replace("myhost-1700000000", "from-env"))
    assert load_settings(None, env={"PHOENIX_AGENT_CONFIG": str(path)}).host_id == "from-env"


def test_host_id_defaults_to_hostname(tmp_path: Path) -> None:
    import socket

    settings = load_settings(str(write(tmp_path, "api_url: http://127.0.0.1:8080\n")), env={})
    assert settings.host_id == socket.gethostname()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host_id: a\n", "api_url is required"),
        ("api_url: ftp://x\n", "api_url must be an http:// or https:// URL"),
        ("api_url: http://x\npoll_interval: 0.5s\n", "poll_interval must be between 1s and 60s"),
        ("api_url: http://x\npoll_interval: 2m\n", "poll_interval must be between 1s and 60s"),
        ("api_url: http://x\npoll_interval: soon\n", "poll_interval must be a duration"),
        ("api_url: http://x\nlog_level: loud\n", "log_level must be one of"),
        ("api_url: http://x\nstate_dir: relative/dir\n", "state_dir must be absolute"),
        (
            "api_url: http://x\ncollector:\n  config_path: collector.yaml\n",
            "collector.config_path must be absolute",
        ),
        (
            "api_url: http://x\ncollector:\n  supervisor: docker\n",
            "collector.supervisor must be systemd or process",
        ),
        ("api_url: http://x\ncollector:\n  health_url: localhost:13133\n", "collector.health_url must be"),
        ("api_url: http://x\ncollector:\n  apply_timeout: 0s\n", "collector.apply_timeout must be positive"),
        (
            "api_url: http://x\ncollector:\n  restart_backoff_initial: 0s\n",
            "collector.restart_backoff_initial must be between 50ms and 1h",
        ),
        (
            "api_url: http://x\ncollector:\n  restart_backoff_initial: 5s\n  restart_backoff_max: 1s\n",
            "collector.restart_backoff_max must be between collector.restart_backoff_initial and 1h",
        ),
        ("api_url: http://x\ncollector:\n  colour: red\n", "collector.colour is not a known setting"),
        ("api_url: http://x\nlabels: [a, b]\n", "labels must be a mapping"),
        ("api_url: http://x\nnamespace: Prod_EU\n", "namespace must be a DNS label"),
        ("api_url: http://x\nhost_id: my host\n", "host_id must be 1-253 letters"),
        ("api_url: http://x\nbackoff_max: 0s\n", "backoff_max must be between 100ms and 1h"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_invalid_settings_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_settings(str(write(tmp_path, text)), env={})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(str(tmp_path / "nope.yaml"), env={})


def test_token_is_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings(str(write(tmp_path, GUIDE + "token: s3cret-token-value\n")), env={})
    assert settings.token == "s3cret-token-value"
    assert "s3cret" not in repr(settings)
    assert isinstance(settings, AgentSettings)
