"""The phase table: gauge numbers, final and active phases, legal and illegal moves."""

from __future__ import annotations

import itertools

import pytest

from control_plane.phases import ACTIVE, FINAL, TRANSITIONS, IllegalTransition, Phase, check


def test_gauge_numbers_are_the_documented_ones() -> None:
    assert {p.value: p.gauge for p in Phase} == {
        "pending": 0,
        "deploying": 1,
        "warming_up": 2,
        "running": 3,
        "analyzing": 4,
        "completed": 5,
        "failed": 6,
        "stopped": 7,
    }


def test_final_and_active_phases() -> None:
    assert set(FINAL) == {Phase.COMPLETED, Phase.FAILED, Phase.STOPPED}
    assert set(ACTIVE) == {Phase.DEPLOYING, Phase.WARMING_UP, Phase.RUNNING, Phase.ANALYZING}
    assert set(TRANSITIONS) == set(Phase)


def test_the_happy_path_is_legal_and_every_active_phase_can_stop() -> None:
    path = [Phase.PENDING, Phase.DEPLOYING, Phase.WARMING_UP, Phase.RUNNING, Phase.ANALYZING, Phase.COMPLETED]
    for current, to in itertools.pairwise(path):
        assert check(current, to) is to
    for phase in ACTIVE | {Phase.PENDING}:
        assert check(phase, Phase.STOPPED) is Phase.STOPPED


@pytest.mark.parametrize(
    ("current", "to"),
    [
        ("pending", Phase.RUNNING),
        ("pending", Phase.FAILED),
        ("running", Phase.WARMING_UP),
        ("completed", Phase.STOPPED),
        ("stopped", Phase.DEPLOYING),
        ("failed", Phase.FAILED),
    ],
)
def test_moves_not_in_the_table_raise(current: str, to: Phase) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {to}"):
        check(current, to)
