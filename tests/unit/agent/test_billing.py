"""Billed series, churn, datapoints and CPU rates counted from expositions the way a backend counts them."""

from __future__ import annotations

import pytest

from agent.measure import BillingCounter, parse_exposition, summarize


def _line(name: str, labels: dict[str, str], value: float, ts_ms: int | None = None) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value}" + (f" {ts_ms}" if ts_ms is not None else "")


def _cpu(name: str, pid: str, state: str, value: float, ts: float) -> str:
    labels = {"process_executable_name": name, "process_pid": pid, "state": state}
    return _line("process_cpu_time_seconds_total", labels, value, int(ts * 1000))


def test_a_series_is_billed_until_a_whole_window_passes_without_a_new_datapoint() -> None:
    billing = BillingCounter(window=60)
    t0 = 1_800_000_000.0
    first = billing.observe(
        parse_exposition(_cpu("a", "1", "user", 1, t0) + "\n" + _cpu("b", "2", "user", 1, t0)), t0
    )
    assert first["billed_series"] == 2 and first["new_series_per_hour"] == 0.0
    # b exited: the exporter repeats its last point (same timestamp) until it expires.
    text = (
        _cpu("a", "1", "user", 2, t0 + 10)
        + "\n"
        + _cpu("b", "2", "user", 1, t0)
        + "\n"
        + _cpu("c", "3", "user", 0, t0 + 10)
    )
    second = billing.observe(parse_exposition(text), t0 + 10)
    assert second["billed_series"] == 3
    assert second["datapoints_per_minute"] == pytest.approx(2 * 6)  # a and c are new points; b is a repeat
    assert second["new_series_per_hour"] == pytest.approx(3600 / 10)  # c, the first series made after start
    late = billing.observe(
        parse_exposition(_cpu("a", "1", "user", 9, t0 + 61) + "\n" + _cpu("c", "3", "user", 1, t0 + 61)),
        t0 + 61,
    )
    assert late["billed_series"] == 2  # b's only point is older than the window
    assert late["observed_seconds"] == pytest.approx(61)


def test_without_timestamps_every_scrape_is_a_datapoint() -> None:
    billing = BillingCounter(window=120)
    text = _line("m", {"x": "1"}, 1) + "\n" + _line("m", {"x": "2"}, 1)
    billing.observe(parse_exposition(text), 100.0)
    assert billing.observe(parse_exposition(text), 130.0)["datapoints_per_minute"] == pytest.approx(4.0)


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        BillingCounter(window=0)


def test_rates_count_increases_per_series_resets_and_only_user_and_system() -> None:
    t0 = 1_800_000_000.0
    one = "\n".join(
        [_cpu("a", "1", "user", 10, t0), _cpu("a", "1", "wait", 5, t0), _cpu("other", "", "user", 100, t0)]
    )
    _, ref = summarize(one, variant="v", pipeline="p", previous=None, critical=[], now=t0)
    two = "\n".join(
        [
            _cpu("a", "1", "user", 12, t0 + 10),
            _cpu("a", "1", "wait", 50, t0 + 10),  # I/O wait is not CPU
            _cpu("other", "", "user", 3, t0 + 10),  # a reset: the new value is the increase
            _cpu("new", "7", "user", 4, t0 + 10),  # new: nothing to compare with yet
        ]
    )
    sample, ref = summarize(two, variant="v", pipeline="p", previous=ref, critical=[], now=t0 + 10)
    assert sample["process_cpu_seconds_rate"] == {
        "a": pytest.approx(0.2),
        "new": 0.0,
        "other": pytest.approx(0.3),
    }
    assert sample["cpu_total_rate"] == pytest.approx(0.5)


def test_a_series_missing_from_one_collection_is_measured_from_its_last_value() -> None:
    """A per-name aggregate not updated in one collection keeps its last point; its next increase counts."""
    t0 = 1_800_000_000.0
    agg = {"process_executable_name": "job", "state": "user"}
    base = lambda ts: _cpu("svc", "1", "user", ts - t0, ts)  # noqa: E731 - one busy process
    texts = [
        base(t0) + "\n" + _line("process_cpu_time_seconds_total", agg, 1, int(t0 * 1000)),
        base(t0 + 10) + "\n" + _line("process_cpu_time_seconds_total", agg, 1, int(t0 * 1000)),
        base(t0 + 20) + "\n" + _line("process_cpu_time_seconds_total", agg, 3, int((t0 + 20) * 1000)),
    ]
    ref = None
    totals = []
    for i, text in enumerate(texts):
        sample, ref = summarize(
            text,
            variant="v",
            pipeline="p",
            previous=ref,
            critical=[],
            now=t0 + 10 * i,
            collection_interval=10,
        )
        totals.append(sample.get("cpu_total_rate"))
    assert totals[1:] == [pytest.approx(1.0), pytest.approx(1.2)]


def test_a_series_without_a_process_name_counts_in_the_total() -> None:
    t0 = 1_800_000_000.0
    nameless = lambda v, ts: _line("process_cpu_time_seconds_total", {"state": "system"}, v, int(ts * 1000))  # noqa: E731
    _, ref = summarize(nameless(1, t0), variant="v", pipeline="p", previous=None, critical=[], now=t0)
    sample, _ = summarize(
        nameless(2, t0 + 5), variant="v", pipeline="p", previous=ref, critical=[], now=t0 + 5
    )
    assert sample["cpu_total_rate"] == pytest.approx(0.2) and sample["process_cpu_seconds_rate"] == {}


def test_samples_are_read_halfway_between_two_collections() -> None:
    from agent.experiment import mid_collection

    assert mid_collection(3.0, collected_at=0.0, interval=10.0) == 5.0
    assert mid_collection(7.0, collected_at=0.0, interval=10.0) == 15.0
    assert mid_collection(5.0, collected_at=100.0, interval=10.0) == 5.0  # already halfway
    assert mid_collection(3.0, collected_at=None, interval=10.0) == 3.0  # nothing collected yet


def test_a_series_that_leaves_the_exposition_and_comes_back_is_measured_from_its_last_value() -> None:
    """A kept name with no process for a while: the exporter expired its aggregate; when a process of
    that name runs again, its increase counts, as rate() over a range reaching past the gap counts it."""
    t0 = 1_800_000_000.0
    svc = lambda ts: _cpu("svc", "1", "user", ts - t0, ts)  # noqa: E731
    job = lambda v, ts: _line(  # noqa: E731
        "process_cpu_time_seconds_total",
        {"process_executable_name": "cron", "state": "user"},
        v,
        int(ts * 1000),
    )
    texts = [svc(t0) + "\n" + job(2, t0), svc(t0 + 10), svc(t0 + 20) + "\n" + job(3, t0 + 20)]
    ref = None
    rates = []
    for i, text in enumerate(texts):
        sample, ref = summarize(text, variant="v", pipeline="p", previous=ref, critical=[], now=t0 + 10 * i)
        rates.append(sample.get("process_cpu_seconds_rate"))
    assert rates[2] == {"svc": pytest.approx(1.0), "cron": pytest.approx(0.1)}
