"""Timing of periodic work."""

from __future__ import annotations

import random


def jittered(interval: float) -> float:
    """`interval` x uniform(0.8, 1.2), so that many agents do not act in lockstep."""
    return interval * random.uniform(0.8, 1.2)
