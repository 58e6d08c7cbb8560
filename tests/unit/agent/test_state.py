"""The state directory: atomic writes and an outbox that keeps reports across agent restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.state import Outbox, StateDir, atomic_write


def test_outbox_survives_a_restart_and_keeps_order(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "outbox")
    first.put("status", "/tasks/a/status", {"status": "running"})
    first.put("measurements", "/measurements", {"experiment_id": "e", "task_id": "a", "samples": [{"x": 1}]})
    first.put("status", "/tasks/a/status", {"status": "completed", "result": {"ok": True}})

    # A new agent process opens the same directory.
    second = Outbox(tmp_path / "outbox")
    pending = second.pending()
    assert [(e.kind, e.body.get("status")) for e in pending] == [
        ("status", "running"),
        ("measurements", None),
        ("status", "completed"),
    ]
    second.done(pending[0])
    later = second.put("status", "/tasks/b/status", {"status": "running"})
    assert later.seq > pending[-1].seq
    assert [e.seq for e in Outbox(tmp_path / "outbox").pending()] == [
        pending[1].seq,
        pending[2].seq,
        later.seq,
    ]


def test_corrupt_outbox_entry_is_set_aside(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    good = box.put("status", "/tasks/a/status", {"status": "running"})
    (tmp_path / "outbox" / "000000000000.json").write_text("{not json")
    assert [e.seq for e in box.pending()] == [good.seq]
    assert (tmp_path / "outbox" / "000000000000.corrupt").exists()


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.yaml"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["b.yaml"]


def test_keep_path_stays_inside_the_state_dir(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert (
        state.keep_path("/var/lib/phoenix-agent/keep/candidate.yaml") == tmp_path / "keep" / "candidate.yaml"
    )
    for bad in ("/etc/passwd", "/x/keep/../../evil.yaml/..", "/x/keep/.hidden.yaml", "/x/keep/a b.yaml"):
        try:
            state.keep_path(bad)
        except ValueError as exc:
            assert "keep_list.path" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_measurements_are_capped_but_status_reports_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.state

    monkeypatch.setattr(agent.state, "MAX_MEASUREMENT_ENTRIES", 3)
    box = Outbox(tmp_path / "outbox")
    box.put("status", "/tasks/a/status", {"status": "running"})
    for i in range(6):
        box.put("measurements", "/measurements", {"samples": [{"i": i}]})
    box.put("status", "/tasks/a/status", {"status": "completed"})
    kept = box.pending()
    assert [e.kind for e in kept] == ["status", "measurements", "measurements", "measurements", "status"]
    assert [e.body["samples"][0]["i"] for e in kept if e.kind == "measurements"] == [3, 4, 5]
