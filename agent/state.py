"""The agent's state directory: last received/good configs, keep-list files and the report outbox."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from phoenix_common.wire import DNS_LABEL

log = structlog.get_logger("phoenix.agent.state")

_KEEP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.yaml$")
HEADERS_SUFFIX = ".headers.yaml"
_ENTRY_NAME = re.compile(r"^(\d{12})(?:-([a-z]+))?\.json$")
# Measurement batches kept while the control plane is unreachable (about 14 h at one batch per 10 s);
# beyond that the oldest are dropped. Status reports are never dropped.
MAX_MEASUREMENT_ENTRIES = 5000


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so that a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class StateDir:
    """Paths and small records under the agent's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keep_dir = root / "keep"
        self.secrets_dir = root / "secrets"
        self.outbox_dir = root / "outbox"
        self.last_received = root / "last_received.yaml"
        self.last_good = root / "last_good.yaml"
        self.applied_file = root / "applied.json"
        self.experiment_file = root / "experiment.json"

    def ensure(self) -> None:
        """Create the directory tree (private: results may hold host details)."""
        for directory in (self.root, self.keep_dir, self.outbox_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)

    def keep_path(self, original: str) -> Path:
        """Where the agent keeps the keep-list file whose contract path is `original`."""
        name = Path(original).name
        if not _KEEP_NAME.match(name) or name.startswith("."):
            raise ValueError(f"keep_list.path must end in <variant>.yaml, got {original!r}")
        return self.keep_dir / name

    def secret_path(self, original: str) -> Path:
        """Where the agent keeps the secret headers file whose contract path is `original`."""
        name = Path(original).name
        if not name.endswith(HEADERS_SUFFIX) or not DNS_LABEL.match(name.removesuffix(HEADERS_SUFFIX)):
            raise ValueError(f"secret file must be named <destination>.headers.yaml, got {original!r}")
        return self.secrets_dir / name

    def load_applied(self) -> dict[str, Any]:
        """What the agent last applied (hash, pipeline, keep-lists), or {}."""
        return self.load_json(self.applied_file) or {}

    def save_applied(self, record: dict[str, Any]) -> None:
        atomic_write(self.applied_file, json.dumps(record, sort_keys=True))

    def load_json(self, path: Path) -> dict[str, Any] | None:
        """A small JSON record, or None when it is missing or unreadable."""
        text = read_text(path)
        if not text:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            log.warning("state_record_corrupt", path=str(path))
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class OutboxEntry:
    """One report waiting to be accepted by the control plane."""

    seq: int
    kind: str  # "status" or "measurements"
    path: str  # API path relative to /api/v1/agent
    body: dict[str, Any]
    file: Path


class Outbox:
    """Reports not yet accepted, one JSON file each, sent in order; survives an agent restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._next = 1 + max((seq for seq, _ in self._files()), default=0)

    def _files(self, kind: str | None = None) -> list[tuple[int, Path]]:
        found = []
        for file in self.directory.iterdir():
            match = _ENTRY_NAME.match(file.name)
            if match and (kind is None or match.group(2) == kind):
                found.append((int(match.group(1)), file))
        return sorted(found)

    def put(self, kind: str, path: str, body: dict[str, Any]) -> OutboxEntry:
        """Persist a report before trying to send it, so that neither a crash nor a restart loses it."""
        seq = self._next
        self._next += 1
        file = self.directory / f"{seq:012d}-{kind}.json"
        atomic_write(file, json.dumps({"kind": kind, "path": path, "body": body}), mode=0o600)
        if kind == "measurements":
            self._cap("measurements", MAX_MEASUREMENT_ENTRIES)
        return OutboxEntry(seq, kind, path, body, file)

    def _cap(self, kind: str, limit: int) -> None:
        """Drop the oldest entries of `kind` beyond `limit`, so that a long outage cannot fill the disk."""
        files = self._files(kind)
        for _, file in files[: max(0, len(files) - limit)]:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
            log.warning("outbox_entry_dropped", kind=kind, file=file.name, limit=limit)

    def pending(self) -> list[OutboxEntry]:
        """Entries in the order they were put; unreadable files are set aside, not retried forever."""
        entries = []
        for seq, file in self._files():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                entries.append(
                    OutboxEntry(seq, str(data["kind"]), str(data["path"]), dict(data["body"]), file)
                )
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError):
                log.error("outbox_entry_corrupt", file=str(file))
                with contextlib.suppress(OSError):
                    file.rename(file.with_suffix(".corrupt"))
        return entries

    def done(self, entry: OutboxEntry) -> None:
        with contextlib.suppress(FileNotFoundError):
            entry.file.unlink()

    def __len__(self) -> int:
        return len(self._files())
