"""Samples thinned by compaction count for the samples they stand for, and only the database says how
many: the weighted ranks and medians, and the `represents` count the analysis takes from the row."""

from __future__ import annotations

import random
import statistics

from control_plane.analysis import analyze
from control_plane.stats import rank, weighted_median, weighted_rank
from tests.unit.experiments.test_analysis import PRICES, SPEC, run


def test_with_every_weight_one_the_weighted_rank_is_the_nearest_rank() -> None:
    rng = random.Random(7)
    for n in (1, 2, 19, 20, 21, 100, 333):
        values = [rng.uniform(0, 100) for _ in range(n)]
        for q in (0.0, 0.1, 0.5, 0.95, 1.0):
            assert weighted_rank([(v, 1.0) for v in values], q) == rank(values, q)
        assert weighted_median([(v, 1.0) for v in values]) == statistics.median(values)


def test_a_weight_counts_as_that_many_copies() -> None:
    assert weighted_rank([(1.0, 1), (5.0, 9)], 0.1) == 1.0
    assert weighted_rank([(1.0, 1), (5.0, 9)], 0.11) == 5.0
    assert weighted_median([(1.0, 3), (2.0, 1), (9.0, 1)]) == 1.0
    assert weighted_rank([], 0.5) is None


def thinned(rows: list[dict], keep_every: int) -> list[dict]:
    """What compaction leaves: of each run of `keep_every` ticks, the first, standing for all of them."""
    out = []
    for i in range(0, len(rows), 2 * keep_every):
        tick = rows[i : i + 2 * keep_every]
        out += [{**r, "represents": len(tick) // 2} for r in tick[:2]]
    return out


def test_thinned_rows_give_the_figures_of_the_full_ones_when_each_bucket_is_steady() -> None:
    # Billed series change once per 6 ticks; keeping 1 of 6 ticks keeps their distribution.
    def base(i: int) -> dict:
        return {"billed_series": 200 + 50 * ((i // 6) % 4)}

    full = run("h1", 120, base=base)
    full_host = analyze(full, spec=SPEC, prices=PRICES)["hosts"]["h1"]
    thin_host = analyze(thinned(full, 6), spec=SPEC, prices=PRICES)["hosts"]["h1"]
    assert thin_host["pairs"] == 20 and full_host["pairs"] == 120
    assert thin_host["baseline"]["represents"] == 120
    assert thin_host["baseline"]["billed_series"]["p95"] == full_host["baseline"]["billed_series"]["p95"]
    assert thin_host["baseline"]["billed_series"]["mean"] == full_host["baseline"]["billed_series"]["mean"]
    assert thin_host["billed_series_reduction_percent"] == full_host["billed_series_reduction_percent"]


def test_an_agent_cannot_claim_its_sample_stands_for_many() -> None:
    rows = run("h1", 12)
    forged = [{**r, "sample": {**r["sample"], "_represents": 10_000}} for r in rows]
    host = analyze(forged, spec=SPEC, prices=PRICES)["hosts"]["h1"]
    assert host["baseline"]["represents"] == 12
