"""agent.policy: what Phoenix renders runs; a file exporter, ${env:...} or a file off the state does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent import policy
from config_generator.catalog import load_catalog
from config_generator.render import render

STATE = Path("/var/lib/phoenix-agent")


@pytest.mark.parametrize("template", sorted(load_catalog()))
def test_every_template_keeps_to_the_policy(template: str) -> None:
    entry = load_catalog()[template]
    keep = {"keep_list_path": str(STATE / "keep" / "v.yaml")} if "keep_list_path" in entry.parameters else {}
    rendered = render(entry, keep, "v")
    text = rendered.config_yaml
    policy.check(text, yaml.safe_load(text), [STATE])


def _config(**sections: object) -> dict[str, object]:
    return {"receivers": {"hostmetrics/p": {}}, "exporters": {"prometheus/p": {}}, **sections}


@pytest.mark.parametrize(
    ("text", "config", "words"),
    [
        ("", _config(exporters={"file/steal": {"path": "/tmp/x"}}), "exporter type 'file'"),
        ("", _config(receivers={"filelog/x": {}}), "receiver type 'filelog'"),
        ("", _config(extensions={"pprof": {}}), "extension type 'pprof'"),
        ("x: ${env:HOME}", _config(), "${env:...} is not allowed"),
        ("x: ${file:/etc/shadow}", _config(), "outside the agent's state"),
        ("x: ${file:/var/lib/phoenix-agent/../../etc/shadow}", _config(), "outside the agent's state"),
        ("x: ${file:keep/v.yaml}", _config(), "outside the agent's state"),
        # A YAML escape hides the expansion from the text, not from the parsed config.
        ('x: "\\x24{file:/etc/shadow}"', _config(x="${file:/etc/shadow}"), "outside the agent's state"),
        (
            "",
            _config(service={"telemetry": {"logs": {"output_paths": ["/etc/cron.d/x"]}}}),
            "stdout or stderr",
        ),
        ("", _config(extensions={"file_storage/q": {"directory": "/etc"}}), "stores outside"),
    ],
)
def test_what_phoenix_does_not_render_is_refused(text: str, config: dict[str, object], words: str) -> None:
    with pytest.raises(policy.PolicyError) as refused:
        policy.check(text, config, [STATE], "payload.config_yaml")
    assert words in str(refused.value) and "payload.config_yaml" in str(refused.value)


def test_a_file_under_the_state_is_allowed() -> None:
    policy.check("x: ${file:/var/lib/phoenix-agent/keep/v.yaml}", _config(), [STATE])
