"""Timing: warm up, repeat, report the median and the spread (min, max, IQR).

Variants are compared as ratios measured in the same process, interleaved round by round
(``interleaved_calls``; ``interleaved_ratios`` adds the per-round ratios against the first
variant, ``measure.stats.Ratio``, and repeats a quick call within each sample as ``timeit``
does, so that a few milliseconds of jitter do not decide a ratio); the environment
(``measure.environment``) is recorded with every result.
"""
from __future__ import annotations

import math
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


def loops_for(first_seconds: float, min_seconds: float) -> int:
    """How many back-to-back calls fill ``min_seconds`` when one call took ``first_seconds``
    (at least 1), as ``timeit`` chooses its loop count."""
    return max(1, math.ceil(min_seconds / max(first_seconds, 1e-6)))


def interleaved_per_call(fns: list, loops: list[int], rounds: int = 3, warmup: int = 0) -> list[list[float]]:
    """``interleaved_calls`` where sample i of function j is ``loops[j]`` back-to-back calls,
    reported as seconds per call."""
    def looped(fn, n):
        def run():
            for _ in range(n):
                fn()
        return run
    samples = interleaved_calls([looped(fn, n) for fn, n in zip(fns, loops)], rounds=rounds, warmup=warmup)
    return [[t / n for t in ts] for ts, n in zip(samples, loops)]


def interleaved_ratios(fns: dict, *, rounds: int = 3, min_seconds: float = 0.25, with_samples: bool = False) -> tuple:
    """Time the variants ``{name: fn}`` interleaved for ``rounds`` rounds, after two unrecorded
    calls each (a warm-up, then one that sets how many calls a sample holds, ``loops_for``:
    a first call can be slower, e.g. while TorchScript's profiling executor optimises), and compare each
    with the first: ``({name: Timing of seconds per call}, {name: measure.stats.Ratio})`` where
    the ratio is how many times faster than the first variant, the median of per-round ratios
    with their range (``unstable`` when too wide to judge); ``with_samples`` adds a third dict,
    the per-round seconds per call in round order (to pair variants other than the first)."""
    from .stats import speed_ratio

    names, loops = list(fns), []
    for name in names:
        fns[name]()
        t0 = time.perf_counter()
        fns[name]()
        loops.append(loops_for(time.perf_counter() - t0, min_seconds))
    samples = dict(zip(names, interleaved_per_call([fns[n] for n in names], loops, rounds=rounds)))
    base = samples[names[0]]
    out = ({n: summarize(ts) for n, ts in samples.items()}, {n: speed_ratio(base, ts) for n, ts in samples.items()})
    return (*out, samples) if with_samples else out
