"""Agent config files for the config tests: the operations guide's example and a writer."""

from __future__ import annotations

from pathlib import Path

GUIDE = """\
api_url: https://phoenix.example.com:8080
host_id: myhost-1700000000
poll_interval: 30s
log_level: info
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path
