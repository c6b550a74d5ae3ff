"""DER over a set of recordings: the one scoring function every chapter uses.

``score(recordings, hypotheses)`` returns per-file rows and corpus totals in both conventions
(``core.metrics``: strict, and FluidAudio-style), with the speaker counts of reference and
hypothesis. ``score_variant`` runs a pipeline variant (or a built pyannote pipeline) over the
recordings first. Totals are corpus-level rates (errors summed over files / reference speech
summed over files), not means of per-file rates.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable

from pyannote.core import Annotation

from ..core.data import Recording
from ..core.metrics import DERAccumulator


def score(recordings: Iterable[Recording], hypotheses: Iterable[Annotation]) -> dict:
    """``{"files": [per-file rows], "totals": {der_strict, der_fluidaudio, miss/false/confusion,
    speakers_ref_mean, speakers_hyp_mean, files, audio_seconds}}``."""
    acc, rows = DERAccumulator(), []
    for rec, hyp in zip(recordings, hypotheses, strict=True):
        row = acc.add(rec.uri, rec.reference, hyp, rec.uem)
        row.update(source=rec.source, condition=rec.meta.get("condition", rec.source),
                   seconds=rec.duration, speakers_ref=len(rec.reference.labels()),
                   speakers_hyp=len(hyp.labels()))
        rows.append(row)
    totals = acc.totals() | {"files": len(rows), "audio_seconds": sum(r["seconds"] for r in rows)}
    if rows:
        totals |= {"speakers_hyp_mean": statistics.mean(r["speakers_hyp"] for r in rows),
                   "speakers_ref_mean": statistics.mean(r["speakers_ref"] for r in rows)}
    return {"files": rows, "totals": totals}


def score_variant(variant, recordings: list[Recording], *, name: str | None = None, progress: bool = False,
                  profile: str = "full", **variant_kwargs) -> dict:
    """Run a variant (a registered name, a ``Variant`` or a built pyannote pipeline) over the
    recordings with ``measure.benchmark.run_benchmark`` (warm-up, stage timing, peak RSS) and
    return its totals: DER in both conventions, speed and mean speaker counts."""
    from ..pipelines.reference import pipeline_variant
    from ..pipelines.registry import Variant
    from .benchmark import run_benchmark

    if not isinstance(variant, (str, Variant)):
        variant = pipeline_variant(name or "pipeline", variant)
    return run_benchmark(variant, recordings=recordings, profile=profile, progress=progress, **variant_kwargs)["totals"]


def score_on_files(pipe, recordings: list[Recording], files: list[dict], oracle_count: bool = False) -> dict:
    """Run a built pyannote pipeline on ``files`` (the recordings' pyannote file dicts, which may
    hold what a pipeline in training mode cached there: ``measure.tuning``) and ``score`` it;
    ``oracle_count`` gives each call the file's true number of speakers (``num_speakers``)."""
    hyps = []
    for rec, f in zip(recordings, files, strict=True):
        res = pipe(f, **({"num_speakers": len(rec.reference.labels())} if oracle_count else {}))
        hyps.append(res.speaker_diarization if hasattr(res, "speaker_diarization") else res)
    return score(recordings, hyps)
