"""The experiment phases: one enum, one transition table, the gauge's numbers."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where an experiment is; the SQL CHECK constraint on experiments.phase lists the same values."""

    PENDING = "pending"
    DEPLOYING = "deploying"
    WARMING_UP = "warming_up"
    RUNNING = "running"
    ANALYZING = "analyzing"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def gauge(self) -> int:
        """The phoenix_experiment_phase value (the operations guide and alert rules use these numbers)."""
        return list(Phase).index(self)


# Every phase but pending can fail or be stopped while it is active; final phases go nowhere.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.DEPLOYING, Phase.STOPPED}),
    Phase.DEPLOYING: frozenset({Phase.WARMING_UP, Phase.FAILED, Phase.STOPPED}),
    Phase.WARMING_UP: frozenset({Phase.RUNNING, Phase.FAILED, Phase.STOPPED}),
    Phase.RUNNING: frozenset({Phase.ANALYZING, Phase.FAILED, Phase.STOPPED}),
    Phase.ANALYZING: frozenset({Phase.COMPLETED, Phase.FAILED, Phase.STOPPED}),
    Phase.COMPLETED: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.STOPPED: frozenset(),
}
FINAL = frozenset(p for p, nexts in TRANSITIONS.items() if not nexts)
# What the driver advances: the phases an experiment can fail in (it is running on hosts).
ACTIVE = frozenset(p for p, nexts in TRANSITIONS.items() if Phase.FAILED in nexts)


class IllegalTransition(RuntimeError):
    """A phase change the transition table does not allow."""


def check(current: str, to: Phase) -> Phase:
    """`to`, if an experiment in `current` may move there; IllegalTransition otherwise."""
    if to not in TRANSITIONS[Phase(current)]:
        raise IllegalTransition(f"an experiment cannot go from {current} to {to}")
    return to
