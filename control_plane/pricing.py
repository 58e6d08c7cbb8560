"""What a backend charges: the price models and the monthly cost of billed series and datapoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from control_plane.stats import rounded

MINUTES_PER_MONTH = 60 * 24 * 30
SECONDS_PER_MONTH = MINUTES_PER_MONTH * 60
PRICE_MODELS = ("per_series", "per_datapoint", "both")


@dataclass(frozen=True)
class Prices:
    """What a backend charges, and for what: billed series per month, datapoints, or both."""

    per_series_month: float
    per_million_datapoints: float
    model: str = "both"

    def monthly(self, billed_series: float, datapoints_per_minute: float | None) -> float:
        """Monthly cost of `billed_series` (the p95 a backend bills) and measured datapoints per minute."""
        series = billed_series * self.per_series_month if self.model != "per_datapoint" else 0.0
        points = (
            (datapoints_per_minute or 0.0) * MINUTES_PER_MONTH / 1e6 * self.per_million_datapoints
            if self.model != "per_series"
            else 0.0
        )
        return series + points

    def describe(self) -> dict[str, Any]:
        return {
            "price_model": self.model,
            "price_per_series_month": self.per_series_month,
            "price_per_million_datapoints": self.per_million_datapoints,
        }

    def cost(
        self,
        before: tuple[float, float | None],
        after: tuple[float, float | None],
    ) -> dict[str, Any]:
        """Monthly and annual cost before and after, each from (billed series, datapoints per minute)."""
        b, a = self.monthly(*before), self.monthly(*after)
        return {
            **self.describe(),
            "billed_series_before": round(before[0], 2),
            "billed_series_after": round(after[0], 2),
            "datapoints_per_minute_before": rounded(before[1], 2),
            "datapoints_per_minute_after": rounded(after[1], 2),
            "monthly_before": round(b, 4),
            "monthly_after": round(a, 4),
            "monthly_savings": round(b - a, 4),
            "annual_before": round(b * 12, 4),
            "annual_after": round(a * 12, 4),
            "annual_savings": round((b - a) * 12, 4),
        }
