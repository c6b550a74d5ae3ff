"""Diarization error rate with pyannote.metrics, in the two conventions the book reports.

- ``strict``: collar 0, overlapping speech scored (pyannote's default, used for tuning);
- ``fluidaudio``: a 0.25 s no-score zone on each side of every reference boundary and
  overlapping speech skipped. pyannote.metrics' ``collar`` is the *total* width of that zone,
  so this is ``collar=0.5`` there (NIST md-eval's ``-c 0.25``).
"""
from __future__ import annotations

from pyannote.core import Annotation, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

CONVENTIONS = {
    "strict": {"collar": 0.0, "skip_overlap": False},
    "fluidaudio": {"collar": 0.5, "skip_overlap": True},
}
COMPONENTS = ("missed detection", "false alarm", "confusion", "total")


class DERAccumulator:
    """Per-file and total DER (with miss / false alarm / confusion) under both conventions."""

    def __init__(self):
        self.metrics = {name: DiarizationErrorRate(**kw) for name, kw in CONVENTIONS.items()}
        self.rows: list[dict] = []

    def add(self, uri: str, reference: Annotation, hypothesis: Annotation, uem: Timeline | None = None) -> dict:
        row = {"uri": uri}
        for name, metric in self.metrics.items():
            comp = metric(reference, hypothesis, uem=uem, detailed=True)
            row[f"der_{name}"] = comp["diarization error rate"]
            row[f"scored_{name}"] = comp["total"]  # seconds of reference speech scored (the DER's denominator)
            for c in ("missed detection", "false alarm", "confusion"):
                row[f"{c.split()[0]}_{name}"] = comp[c] / comp["total"] if comp["total"] else 0.0
        self.rows.append(row)
        return row

    def totals(self) -> dict:
        """Corpus-level rates: errors summed over files / reference speech summed over files."""
        out = {}
        for name, metric in self.metrics.items():
            total = metric["total"] if self.rows else 0.0
            out[f"der_{name}"] = abs(metric) if self.rows else float("nan")
            for c in ("missed detection", "false alarm", "confusion"):
                out[f"{c.split()[0]}_{name}"] = metric[c] / total if total else 0.0
        return out


def der(reference: Annotation, hypothesis: Annotation, uem: Timeline | None = None,
        convention: str = "strict") -> float:
    """DER of one file under a named convention."""
    return DiarizationErrorRate(**CONVENTIONS[convention])(reference, hypothesis, uem=uem)
