"""How sure is a measured difference? Confidence intervals for DER changes and speed ratios.

A DER change of one point on twelve minutes of audio is about seven seconds of speech; whether
it means anything depends on how much the files disagree. Every DER change the book reports is
therefore paired with a **paired bootstrap 95 % confidence interval over files**
(``der_change``): the files are resampled with replacement, each file keeping *both* variants'
errors together, and the statistic is the corpus-level change (errors summed over the resampled
files / scored speech summed over them, B minus A, in points). ``scipy.stats.bootstrap`` does
the resampling (``paired=True``, BCa interval).

Speed ratios come from repeated, interleaved runs (A B A B ...), so a load spike hits both
variants: ``speed_ratio`` takes the per-repeat wall times of both and reports the median of the
per-repeat ratios with their spread; a ratio whose spread is wider than ``UNSTABLE_SPREAD`` of
its median is flagged ``unstable``: it is judged only when its whole range gets the same verdict
(``book.verdicts.decided``), and is otherwise shown but not judged.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0
UNSTABLE_SPREAD = 0.25  # (max - min) / median of the per-repeat ratios above this: "unstable"


@dataclass(frozen=True)
class Change:
    """A DER change B - A in points, with its paired-bootstrap confidence interval."""

    points: float
    low: float
    high: float
    files: int
    convention: str
    method: str

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.points:+.2f} pts (no CI: {self.method})"
        return f"{self.points:+.2f} pts [{self.low:+.2f}, {self.high:+.2f}]"

    def as_dict(self) -> dict:
        return asdict(self)


def _errors(files: list[dict], convention: str) -> dict[str, tuple[float, float]]:
    """{uri: (error seconds, scored speech seconds)} from per-file score rows."""
    out = {}
    for f in files:
        total = f.get(f"scored_{convention}")
        if total is None:
            raise ValueError(f"file {f.get('uri')!r} has no 'scored_{convention}' (scored speech seconds): "
                             "it was written by an older version; re-run the benchmark")
        out[f["uri"]] = (f[f"der_{convention}"] * total, total)
    return out


def der_change(a_files: list[dict], b_files: list[dict], convention: str = "strict", *,
               confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Change:
    """Corpus-level DER of B minus A (points) over the files both scored, with a paired
    bootstrap CI over files. Raises ``ValueError`` when the two sets of files differ."""
    ea, eb = _errors(a_files, convention), _errors(b_files, convention)
    if set(ea) != set(eb):
        only = sorted(set(ea) ^ set(eb))
        raise ValueError(f"the two runs scored different files (e.g. {only[:3]}): a paired comparison needs the same files")
    uris = sorted(ea)
    err_a = np.array([ea[u][0] for u in uris])
    err_b = np.array([eb[u][0] for u in uris])
    total = np.array([ea[u][1] for u in uris])
    if not np.allclose(total, [eb[u][1] for u in uris]):
        raise ValueError("the two runs scored different amounts of reference speech on the same files")

    def stat(a, b, t, axis=-1):
        return 100 * (b.sum(axis=axis) - a.sum(axis=axis)) / t.sum(axis=axis)

    points = float(stat(err_a, err_b, total))
    if len(uris) < 2:
        return Change(points, math.nan, math.nan, len(uris), convention, "one file: no interval")
    if np.allclose(err_a, err_b):
        return Change(points, points, points, len(uris), convention, "identical errors on every file")
    res = bootstrap((err_a, err_b, total), stat, paired=True, vectorized=True, confidence_level=confidence,
                    n_resamples=n_resamples, method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    method = f"paired bootstrap over {len(uris)} files, BCa {confidence:.0%}"
    if math.isnan(low) or math.isnan(high):  # BCa undefined (e.g. a degenerate resample distribution)
        res = bootstrap((err_a, err_b, total), stat, paired=True, vectorized=True, confidence_level=confidence,
                        n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        method = f"paired bootstrap over {len(uris)} files, percentile {confidence:.0%}"
    return Change(points, low, high, len(uris), convention, method)


@dataclass(frozen=True)
class Ratio:
    """How many times faster B is than A: the median of per-repeat ratios (A time / B time) and
    their range; ``unstable`` when the range is wider than ``UNSTABLE_SPREAD`` of the median."""

    median: float
    low: float
    high: float
    repeats: int

    @property
    def unstable(self) -> bool:
        return self.repeats < 3 or (self.high - self.low) > UNSTABLE_SPREAD * self.median

    def __str__(self) -> str:
        flag = " UNSTABLE" if self.unstable else ""
        return f"{self.median:.2f}x [{self.low:.2f}-{self.high:.2f}, {self.repeats} runs]{flag}"

    def as_dict(self) -> dict:
        return asdict(self) | {"unstable": self.unstable}

    @classmethod
    def from_columns(cls, row, median: str = "speed-up", low: str = "speed-up low", high: str = "speed-up high",
                     rounds: str = "rounds") -> Ratio:
        """The ratio a table row (or dict) stores in the columns ``median``, ``low``, ``high``, ``rounds``."""
        return cls(float(row[median]), float(row[low]), float(row[high]), int(row[rounds]))


def change_columns(a_files: list[dict], b_files: list[dict]) -> dict[str, float]:
    """The table columns of B's DER change against A (points): the strict change with its paired
    bootstrap 95 % CI (``der_change``) and the FluidAudio-style change."""
    strict, fa = der_change(a_files, b_files), der_change(a_files, b_files, "fluidaudio")
    return {"Δ strict (pts)": strict.points, "CI low": strict.low, "CI high": strict.high, "Δ FluidAudio (pts)": fa.points}


def speed_ratio(a_seconds: list[float], b_seconds: list[float]) -> Ratio:
    """Per-repeat ratios a[i] / b[i] of interleaved runs (repeat i of A next to repeat i of B)."""
    if len(a_seconds) != len(b_seconds) or not a_seconds:
        raise ValueError(f"need the same number (>= 1) of runs of both variants, got {len(a_seconds)} and {len(b_seconds)}")
    if min(b_seconds) <= 0 or min(a_seconds) <= 0:
        raise ValueError("wall times must be positive")
    ratios = [a / b for a, b in zip(a_seconds, b_seconds)]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios), len(ratios))
