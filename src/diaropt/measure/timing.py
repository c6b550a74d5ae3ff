"""Timing: warm up, repeat, report the median and the spread (min, max, IQR).

Variants are compared as ratios measured in the same process; the environment
(``measure.environment``) is recorded with every result.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass


@dataclass
class Timing:
    median: float
    min: float
    max: float
    iqr: float
    repeats: int
    samples: list

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples: list[float]) -> Timing:
    s = sorted(samples)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = s[-1] - s[0]
    return Timing(statistics.median(s), s[0], s[-1], iqr, len(s), s)


def time_call(fn, *, warmup: int = 1, repeats: int = 5) -> Timing:
    """Wall-clock seconds of ``fn()``: ``warmup`` unrecorded calls, then ``repeats`` recorded."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


def interleaved_calls(fns: list, rounds: int = 3, warmup: int = 1) -> list[list[float]]:
    """Wall-clock seconds of each of ``fns``, called in turn (A B C, A B C, ...) for ``rounds``
    rounds after ``warmup`` unrecorded calls each, so that a load spike hits every variant:
    one list of samples per function, round i of each next to round i of the others (ratios
    per round: ``measure.stats.speed_ratio``)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, samples):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return samples
