"""agent.keeplist: which processes stay at full detail, with hysteresis, hold time and spike response."""

from __future__ import annotations

import pytest

from agent.keeplist import KeepListTracker

# A host of 2 cores and 1000 bytes of memory keeps the arithmetic readable: cost = cpu/2 + mem/1000.
HOST = {"cpu_total": 2.0, "memory_total": 1000.0}


def tracker(strategy: str, k: int, critical: tuple[str, ...] = (), **kw: float) -> KeepListTracker:
    return KeepListTracker(strategy, k, critical, **{**HOST, **kw})


def test_topk_ranks_by_cpu_and_memory_each_normalised_by_the_host() -> None:
    t = tracker("topk", 2)
    cpu = {"a": 1.0, "b": 0.0, "c": 0.2, "d": 0.0}  # a: 0.5 of the host's CPU
    mem = {"a": 0.0, "b": 600.0, "c": 0.0, "d": 50.0}  # b: 0.6 of its memory
    assert t.update(cpu, mem, now=0.0) == ["a", "b"]
    assert t.current() == ["a", "b"]
    assert t.scores() == pytest.approx({"a": 0.5, "b": 0.6, "c": 0.1, "d": 0.05})
    assert t.update(cpu, mem, now=10.0) is None  # nothing changed, nothing to write


def test_fewer_processes_than_k_are_all_kept_and_other_and_invalid_names_never() -> None:
    t = tracker("topk", 5)
    cpu = {"a": 0.1, "other": 5.0, "": 1.0, "bad\nname": 1.0, "  ": 1.0}
    assert t.update(cpu, {"b": 10.0}, now=0.0) == ["a", "b"]


def test_scores_oscillating_around_the_boundary_do_not_flap() -> None:
    """Two processes whose costs swap order every refresh: the keep list must not follow them."""
    steady = tracker("topk", 1, min_hold_seconds=60.0)
    flappy = tracker("topk", 1, hysteresis=0.0, min_hold_seconds=0.0)  # the control: no protection
    changes = {"steady": 0, "flappy": 0}
    for i in range(200):
        high, low = 0.22, 0.20  # 10 % apart, inside the 20 % hysteresis
        cpu = {"a": high, "b": low} if i % 2 else {"a": low, "b": high}
        now = i * 120.0  # every refresh is past the minimum hold
        changes["steady"] += steady.update(cpu, {}, now) is not None
        changes["flappy"] += flappy.update(cpu, {}, now) is not None
    assert changes["steady"] == 1  # the first selection only
    assert changes["flappy"] == 200  # without hysteresis it follows every swap


def test_adaptive_smoothing_does_not_flap_on_noisy_usage() -> None:
    t = tracker("adaptive", 2, min_hold_seconds=0.0)
    changes = 0
    for i in range(300):
        noise = 0.03 if i % 3 == 0 else -0.02  # every process jitters, in different phases
        cpu = {"a": 0.30 + noise, "b": 0.28 - noise, "c": 0.27 + (noise if i % 2 else -noise)}
        changes += t.update(cpu, {}, now=float(i)) is not None
    assert changes == 1


def test_a_challenger_needs_the_margin_and_an_incumbent_keeps_its_minimum_hold() -> None:
    t = tracker("topk", 1, hysteresis=0.2, min_hold_seconds=120.0)
    assert t.update({"a": 0.2}, {}, now=0.0) == ["a"]
    # b is 15 % better: not enough.
    assert t.update({"a": 0.2, "b": 0.23}, {}, now=200.0) is None
    # a joined at 0, so at 201 its hold is over and a clearly better c replaces it.
    assert t.update({"a": 0.2, "c": 2.0}, {}, now=201.0) == ["c"]
    # c joined at 201: until 321 nothing displaces it, however strong.
    assert t.update({"c": 0.01, "d": 3.0}, {}, now=300.0) is None
    assert t.update({"c": 0.01, "d": 3.0}, {}, now=320.9) is None
    assert t.update({"c": 0.01, "d": 3.0}, {}, now=321.0) == ["d"]


def test_a_vanished_process_leaves_at_once_even_within_its_hold() -> None:
    t = tracker("topk", 2, min_hold_seconds=1000.0)
    assert t.update({"a": 1.0, "b": 0.9, "c": 0.1}, {}, now=0.0) == ["a", "b"]
    assert t.update({"b": 0.9, "c": 0.1}, {}, now=5.0) == ["b", "c"]


def test_adaptive_keeps_a_sudden_spike_at_once_where_plain_smoothing_lags() -> None:
    def run(spike_weight: float) -> int | None:
        t = tracker("adaptive", 2, min_hold_seconds=60.0, spike_weight=spike_weight)
        base = {"web": 0.30, "db": 0.28, "quiet": 0.01}
        for i in range(10):
            t.update(base, {}, now=i * 100.0)
        assert t.current() == ["db", "web"]
        for step in range(20):
            if "quiet" in t.current():
                return step
            t.update({**base, "quiet": 0.40}, {}, now=1000.0 + step * 100.0)
        return None

    assert run(spike_weight=1.0) == 1  # kept at the first refresh that sees the spike
    lag = run(spike_weight=0.0)
    assert lag is not None and lag > 1


def test_adaptive_lets_a_spike_go_once_it_is_over_and_held_long_enough() -> None:
    t = tracker("adaptive", 1, min_hold_seconds=300.0)
    for i in range(5):
        t.update({"web": 0.3, "batch": 0.0}, {}, now=i * 60.0)
    assert t.update({"web": 0.3, "batch": 1.0}, {}, now=300.0) == ["batch"]
    now = 300.0
    while t.current() == ["batch"] and now < 3000.0:
        now += 60.0
        t.update({"web": 0.3, "batch": 0.0}, {}, now=now)
    assert t.current() == ["web"]
    assert now >= 600.0  # not before its hold ran out


def test_intelligent_always_keeps_critical_plus_k_others() -> None:
    t = tracker("intelligent", 2, critical=("sshd", "kubelet"))
    assert t.current() == ["kubelet", "sshd"]  # even before any measurement, and when absent
    cpu = {"sshd": 0.0, "a": 0.9, "b": 0.5, "c": 0.4}
    assert t.update(cpu, {}, now=0.0) == ["a", "b", "kubelet", "sshd"]
    # A critical process never takes one of the k slots, however busy it is.
    assert t.update({**cpu, "kubelet": 5.0}, {}, now=500.0) is None
    # topk/adaptive give critical names no special place.
    plain = tracker("topk", 1, critical=("sshd",))
    assert plain.update({"sshd": 0.0, "a": 0.5}, {}, now=0.0) == ["a"]


def test_k_zero_intelligent_keeps_only_critical() -> None:
    t = tracker("intelligent", 0, critical=("sshd",))
    assert t.update({"a": 1.0, "sshd": 0.1}, {}, now=0.0) is None
    assert t.current() == ["sshd"]


@pytest.mark.parametrize(
    ("args", "kw", "message"),
    [
        (("best", 3, []), {}, "strategy must be one of topk, adaptive, intelligent"),
        (("topk", -1, []), {}, "k must be a non-negative integer"),
        (("topk", 2, []), {"hysteresis": -0.1}, "hysteresis must be a finite number >= 0"),
        (("topk", 2, []), {"ewma_alpha": 0.0}, "ewma_alpha must be in"),
        (("intelligent", 2, ["other"]), {}, "'other' is reserved"),
        (("intelligent", 2, ["ok", "bad\x00"]), {}, "control character"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_reason(args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeepListTracker(*args, **kw)


# -- intelligent: the fewest names that cover a CPU target, with hysteresis ---------------------------


def _coverage_tracker(k: int = 40, hold: float = 0.0) -> KeepListTracker:
    return KeepListTracker(
        "intelligent", k, ["crit"], coverage_target=90, min_hold_seconds=hold, ewma_alpha=1.0, cpu_total=2
    )


def test_coverage_target_keeps_the_fewest_names_that_reach_it() -> None:
    tracker = _coverage_tracker()
    cpu = {"crit": 0.1, "a": 0.5, "b": 0.3, "c": 0.05, "d": 0.03, "e": 0.02}
    # crit 0.1 + a 0.5 + b 0.3 = 0.9 of 1.0: exactly the target, c/d/e are left to `other`.
    assert tracker.update(cpu, {}, 0.0) == ["a", "b", "crit"]


def test_a_kept_name_stays_until_it_falls_outside_the_looser_target() -> None:
    tracker = _coverage_tracker()
    tracker.update({"crit": 0.1, "a": 0.5, "b": 0.3, "c": 0.1}, {}, 0.0)  # a, b (0.9 of 1.0)
    # c rises above b a little: b still sits inside the names covering 95% (halfway to 100%), so it stays,
    # and c enters because the names above it no longer reach 90%.
    assert tracker.update({"crit": 0.1, "a": 0.5, "b": 0.19, "c": 0.21}, {}, 1.0) == ["a", "b", "c", "crit"]
    # b goes idle, but the names kept still cover the target: no change, so no collector reload.
    assert tracker.update({"crit": 0.1, "a": 0.5, "b": 0.0, "c": 0.4}, {}, 2.0) is None
    # A newcomer takes a fifth of the CPU: the kept names fall short, d enters, and b, which no longer
    # helps reach even the looser target, leaves in the same change.
    cpu = {"crit": 0.1, "a": 0.4, "b": 0.0, "c": 0.3, "d": 0.2}
    assert tracker.update(cpu, {}, 3.0) == ["a", "c", "crit", "d"]


def test_coverage_selection_is_capped_at_k_and_honours_the_hold() -> None:
    capped = _coverage_tracker(k=2)
    cpu = {f"n{i}": 0.1 for i in range(10)}
    assert len(capped.update(cpu, {}, 0.0) or []) == 3  # two names + the critical one
    held = _coverage_tracker(hold=60.0)
    held.update({"a": 0.9, "b": 0.1}, {}, 0.0)
    assert held.update({"a": 0.1, "b": 0.9}, {}, 10.0) == ["a", "b", "crit"]  # a is held, b enters


def test_cron_names_between_runs_are_remembered_and_kept() -> None:
    """Eight cron-like names, each running one refresh in four: together a third of the CPU. A name
    whose process is gone at a refresh decays instead of being forgotten, so once their levels have
    settled the kept set covers them all and stops changing."""
    tracker = KeepListTracker("intelligent", 40, [], coverage_target=95, ewma_alpha=0.3, cpu_total=2)
    changes = []
    for step in range(80):
        cpu = {"svc-a": 0.4, "svc-b": 0.2}
        for job in range(8):
            if (step + job) % 4 == 0:
                cpu[f"cron-{job}"] = 0.12
        if tracker.update(cpu, {}, float(step)) is not None:
            changes.append(step)
    assert set(tracker.current()) == {"svc-a", "svc-b", *(f"cron-{j}" for j in range(8))}
    assert not [s for s in changes if s >= 20], changes


def test_an_absent_name_is_forgotten_once_negligible() -> None:
    tracker = KeepListTracker("intelligent", 40, [], coverage_target=95, ewma_alpha=0.5, cpu_total=2)
    tracker.update({"a": 0.5, "gone": 0.01}, {}, 0.0)
    for step in range(1, 12):
        tracker.update({"a": 0.5}, {}, float(step))
    assert "gone" not in tracker._states


def test_coverage_target_must_be_a_percentage() -> None:
    with pytest.raises(ValueError, match="coverage_target"):
        KeepListTracker("intelligent", 3, [], coverage_target=150)


def test_smoothing_by_time_does_not_fade_an_idle_name_faster_when_ranked_more_often() -> None:
    """With ewma_seconds, four updates 5 s apart weigh what one 20 s apart does."""
    slow = KeepListTracker(
        "intelligent", 40, [], coverage_target=98, ewma_alpha=0.3, ewma_seconds=20, cpu_total=2
    )
    fast = KeepListTracker(
        "intelligent", 40, [], coverage_target=98, ewma_alpha=0.3, ewma_seconds=20, cpu_total=2
    )
    for tracker in (slow, fast):
        tracker.update({"svc": 0.5, "cron": 0.1}, {}, 0.0)
    slow.update({"svc": 0.5}, {}, 20.0)
    for now in (5.0, 10.0, 15.0, 20.0):
        fast.update({"svc": 0.5}, {}, now)
    assert fast.scores()["cron"] == pytest.approx(slow.scores()["cron"]) == pytest.approx(0.07)
