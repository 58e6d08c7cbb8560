"""Choose which processes a selection pipeline keeps at full detail, without flapping."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phoenix_common.keeplist import validate_process_name
from phoenix_common.wire import OTHER, STRATEGIES


def valid_process_name(name: object) -> bool:
    """True when `name` may appear in a keep list (and is not the `other` pseudo-process)."""
    if name == OTHER:
        return False
    try:
        validate_process_name(name)
    except ValueError:
        return False
    return True


def _host_cpu_total() -> float:
    """CPU seconds per second the host can deliver: its logical core count."""
    return float(os.cpu_count() or 1)


def _host_memory_total() -> float:
    """Physical memory of the host in bytes."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):  # pragma: no cover - every Linux answers both
        return float(1 << 30)


# A smoothed CPU rate (CPU-seconds per second) below which an absent name is forgotten.
FORGET_BELOW_CPU = 1e-4


@dataclass
class _State:
    """What the tracker remembers about one process name."""

    ewma: float
    score: float = 0.0


class KeepListTracker:
    """Maintain a keep list of up to `k` process names, refreshed from measured CPU and memory."""

    def __init__(
        self,
        strategy: str,
        k: int,
        critical: Sequence[str],
        *,
        hysteresis: float = 0.2,
        min_hold_seconds: float = 120.0,
        spike_weight: float = 1.0,
        ewma_alpha: float = 0.3,
        cpu_total: float | None = None,
        memory_total: float | None = None,
        min_margin: float = 1e-6,
        coverage_target: float | None = None,
        ewma_seconds: float | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
        for label, value in (
            ("hysteresis", hysteresis),
            ("min_hold_seconds", min_hold_seconds),
            ("spike_weight", spike_weight),
            ("min_margin", min_margin),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        if not 0 < ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {ewma_alpha!r}")
        self.strategy = strategy
        self.k = k
        self.hysteresis = hysteresis
        self.min_hold_seconds = min_hold_seconds
        self.spike_weight = spike_weight
        self.ewma_alpha = ewma_alpha
        # With ewma_seconds, `ewma_alpha` is the weight of a measurement that spans that long, and an
        # update after a shorter time weighs less (smoothing by time, not by the number of updates, so
        # that ranking more often does not make a name idle between two runs fade faster).
        if ewma_seconds is not None and not ewma_seconds > 0:
            raise ValueError(f"ewma_seconds must be positive, got {ewma_seconds!r}")
        self.ewma_seconds = ewma_seconds
        self._last_update: float | None = None
        self._step_alpha = ewma_alpha
        self.min_margin = min_margin
        if coverage_target is not None and not 0 < coverage_target <= 100:
            raise ValueError(f"coverage_target must be a percentage in (0, 100], got {coverage_target!r}")
        self.coverage_target = coverage_target / 100.0 if coverage_target is not None else None
        self.cpu_total = cpu_total if cpu_total and cpu_total > 0 else _host_cpu_total()
        self.memory_total = memory_total if memory_total and memory_total > 0 else _host_memory_total()
        for name in critical:
            if name == OTHER:
                raise ValueError("critical process name 'other' is reserved for the folded remainder")
            validate_process_name(name)
        # Only the intelligent strategy guarantees critical processes a place.
        self.critical: tuple[str, ...] = tuple(sorted(set(critical))) if strategy == "intelligent" else ()
        self._states: dict[str, _State] = {}
        # Selected (non-critical) names -> the time they joined, for the minimum hold.
        self._selected: dict[str, float] = {}
        self._current: list[str] = list(self.critical)

    def current(self) -> list[str]:
        """The keep list as last decided, sorted."""
        return list(self._current)

    def scores(self) -> dict[str, float]:
        """The importance score of every process seen in the last update."""
        return {name: state.score for name, state in self._states.items()}

    def _cost(self, cpu: float, memory: float) -> float:
        """CPU and memory use as one figure, each part a fraction of the host's total."""
        return max(cpu, 0.0) / self.cpu_total + max(memory, 0.0) / self.memory_total

    def _score(self, name: str, cost: float) -> float:
        """Update the remembered state of `name` with `cost` and return its importance score."""
        state = self._states.get(name)
        if self.strategy == "topk":
            score = cost
            if state is None:
                self._states[name] = _State(ewma=cost, score=score)
            else:
                state.ewma, state.score = cost, score
            return score
        # adaptive / intelligent: the smoothed level plus how far it just rose above it, so that a
        # sudden spike ranks high at once while a steady process ranks by its smoothed usage.
        previous = state.ewma if state is not None else 0.0
        alpha = self._step_alpha
        ewma = cost if state is None else alpha * cost + (1 - alpha) * previous
        score = ewma + self.spike_weight * max(0.0, cost - previous)
        if state is None:
            self._states[name] = _State(ewma=ewma, score=score)
        else:
            state.ewma, state.score = ewma, score
        return score

    def _beats(self, challenger: float, incumbent: float) -> bool:
        """True when a challenger's score clears an incumbent's by the hysteresis margin."""
        return challenger > incumbent * (1 + self.hysteresis) and challenger > incumbent + self.min_margin

    def update(
        self, cpu_rates: Mapping[str, float], memory: Mapping[str, float], now: float
    ) -> list[str] | None:
        """Feed one measurement; return the new sorted keep list if the selection changed, else None.

        `now` is a monotonic clock's (hold times and, with ewma_seconds, the smoothing step)."""
        self._step_alpha = self._alpha(now)
        if self.coverage_target is not None:
            return self._update_by_coverage(cpu_rates, now)
        present = [n for n in {*cpu_rates, *memory} if valid_process_name(n)]
        scores: dict[str, float] = {}
        for name in present:
            cpu = float(cpu_rates.get(name, 0.0) or 0.0)
            mem = float(memory.get(name, 0.0) or 0.0)
            scores[name] = self._score(name, self._cost(cpu, mem))
        # Forget what vanished so that memory stays bounded under process churn.
        for name in [n for n in self._states if n not in scores]:
            del self._states[name]

        critical = set(self.critical)
        selected = {n: since for n, since in self._selected.items() if n in scores and n not in critical}
        # Best first; the name breaks ties so that the outcome never depends on dict order.
        challengers = sorted(
            (n for n in scores if n not in selected and n not in critical), key=lambda n: (-scores[n], n)
        )
        # Free slots are filled without a margin (there is no incumbent to protect), but never with a
        # process that costs nothing: a slot it takes is a slot a busy newcomer would have to win back.
        while len(selected) < self.k and challengers and scores[challengers[0]] > 0:
            selected[challengers.pop(0)] = now
        # Swap the weakest evictable incumbents for clearly stronger challengers; an idle incumbent has
        # nothing to protect, whatever its age.
        evictable = sorted(
            (n for n, since in selected.items() if now - since >= self.min_hold_seconds or scores[n] <= 0),
            key=lambda n: (scores[n], n),
        )
        for challenger, incumbent in zip(challengers, evictable, strict=False):
            if not self._beats(scores[challenger], scores[incumbent]):
                break
            del selected[incumbent]
            selected[challenger] = now
        self._selected = selected

        new = sorted(critical | set(selected))
        if new == self._current:
            return None
        self._current = new
        return list(new)

    def _alpha(self, now: float) -> float:
        """The weight of this update's measurement: ewma_alpha, scaled to the time since the last one."""
        last, self._last_update = self._last_update, now
        if self.ewma_seconds is None or last is None:
            return self.ewma_alpha
        elapsed = max(0.0, now - last)
        return 1 - (1 - self.ewma_alpha) ** (elapsed / self.ewma_seconds)

    def _update_by_coverage(self, cpu_rates: Mapping[str, float], now: float) -> list[str] | None:
        """The fewest names (at most k) whose smoothed CPU covers the target share, with hysteresis.

        Names are ranked by their smoothed (EWMA) CPU. Nothing changes while the names kept now cover
        the target. When they do not: a newcomer enters when the names ranked above it cover less than
        the target; an incumbent stays while those ranked above it cover less than a looser target
        (halfway from the target to 100%), or while it is held for min_hold_seconds. Critical names are
        always kept and count as covered.
        """
        assert self.coverage_target is not None
        alpha = self._step_alpha
        smoothed: dict[str, float] = {}
        for name, rate in cpu_rates.items():
            if not valid_process_name(name):
                continue
            cpu = max(float(rate or 0.0), 0.0)
            state = self._states.get(name)
            ewma = cpu if state is None else alpha * cpu + (1 - alpha) * state.ewma
            self._states[name] = _State(ewma=ewma, score=ewma)
            smoothed[name] = ewma
        # A name with no process right now (a cron job between two runs) decays as if it used no CPU
        # instead of being forgotten: its share of the host stays counted, so it is kept while its runs
        # matter. It is forgotten once its level is negligible, which bounds memory under churn.
        for name, state in list(self._states.items()):
            if name in smoothed:
                continue
            ewma = (1 - alpha) * state.ewma
            if ewma < FORGET_BELOW_CPU:
                del self._states[name]
                continue
            self._states[name] = _State(ewma=ewma, score=ewma)
            smoothed[name] = ewma
        critical = set(self.critical)
        total = sum(smoothed.values())
        ranked = sorted((n for n in smoothed if n not in critical), key=lambda n: (-smoothed[n], n))
        enter = self.coverage_target
        stay = enter + (1.0 - enter) / 2.0

        def prefix(target: float) -> set[str]:
            covered = sum(smoothed.get(n, 0.0) for n in critical)
            chosen: set[str] = set()
            for name in ranked:
                if (
                    total <= 0
                    or covered >= target * total * (1 - 1e-9)
                    or len(chosen) >= self.k
                    or smoothed[name] <= 0
                ):
                    break
                chosen.add(name)
                covered += smoothed[name]
            return chosen

        kept_share = sum(smoothed.get(n, 0.0) for n in critical | set(self._selected))
        if self._current and total > 0 and kept_share >= enter * total * (1 - 1e-9):
            # The names kept now still cover the target: no change (each one moves series between
            # tiers and mints new ones). A name kept but gone costs no series.
            return None
        entering, staying = prefix(enter), prefix(stay)
        held = {
            n for n, since in self._selected.items() if n in smoothed and now - since < self.min_hold_seconds
        }
        keep = entering | (set(self._selected) & (staying | held))
        keep = set(sorted(keep, key=lambda n: (-smoothed.get(n, 0.0), n))[: self.k])
        self._selected = {n: self._selected.get(n, now) for n in keep}
        new = sorted(critical | keep)
        if new == self._current:
            return None
        self._current = new
        return list(new)
