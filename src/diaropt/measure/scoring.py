"""DER over a set of recordings: the one scoring function every chapter uses.

``score(recordings, hypotheses)`` returns per-file rows and corpus totals in both conventions
(``core.metrics``: strict, and FluidAudio-style), with the speaker counts of reference and
hypothesis. ``score_variant`` runs a pipeline variant (or a built pyannote pipeline) over the
recordings first. ``one_change_table`` scores model variants one model at a time in a shared
harness (the compression chapters). Totals are corpus-level rates (errors summed over files /
reference speech summed over files), not means of per-file rates.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


# ---- one model changed at a time: the harness of the compression chapters ------------------

class MemoFrames:
    """A trunk's ``frames`` function that computes each distinct input once (keyed by a hash of
    its samples): the segmentation variants of ``one_change_table`` change only the masks, so
    they pool the base trunk frames that the first run computed."""

    def __init__(self, frames):
        self.frames, self.store = frames, {}

    def __call__(self, w):
        import hashlib

        key = (tuple(w.shape), hashlib.blake2b(w.contiguous().numpy().tobytes(), digest_size=16).digest())
        if key not in self.store:
            self.store[key] = self.frames(w)
        return self.store[key]


@dataclass
class ModelChange:
    """One variant of ``one_change_table``: the models it changes, labelled ``(changed, variant)``.
    ``segmentation``: a forward (10 s windows -> powerset log-probabilities) in place of the base
    one; ``trunk``: ``(frames, pool)`` (``pipelines.trunks.trunk_and_pool``) in place of the base
    embedding trunk. Exactly one of them."""

    changed: str
    variant: str
    segmentation: Callable | None = None
    trunk: tuple | None = None

    def __post_init__(self):
        if (self.segmentation is None) == (self.trunk is None):
            raise ValueError(f"{self.changed}/{self.variant}: give a segmentation or a trunk, not both or neither")


def one_change_table(embedding: str, recordings: list[Recording], segmentation: Callable, trunk: tuple | None,
                     changes: list[ModelChange], *, base: tuple[str, str] = ("none", "base"),
                     index: tuple[str, str] = ("changed", "variant"), progress: bool = True):
    """DER of the base models, then of each ``ModelChange``, on every recording, with the change in
    points against the base and its paired bootstrap 95 % CI over the files (``measure.stats``).

    The harness is ``optimized``'s block trunk in torch at its step and with its clustering
    (``pipelines.optimized.build_block_trunk_pipeline``) with the base segmentation forward and
    the base embedding trunk (``None``: the chosen embedding model's own), so one model differs
    at a time and a whole test split stays affordable: a changed trunk reuses the base
    segmentation (pyannote's training-mode cache in the file dicts) and a changed segmentation
    the base trunk frames (``MemoFrames``).
    Chapters 03 (quantization) and 09 (pruning) score their variants here.
    Returns (table indexed by ``index``, base totals)."""
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from ..pipelines.optimized import build_block_trunk_pipeline
    from ..pipelines.trunks import trunk_and_pool
    from .stats import change_columns

    first = build_block_trunk_pipeline(embedding, segmentation_forward=segmentation)
    choice = first.embedding_choice
    trunk = trunk or trunk_and_pool(first._embedding.model_)
    base_trunk = (MemoFrames(trunk[0]), trunk[1])
    base_files = [r.as_pyannote_file() for r in recordings]

    def run(pipe, trunk, files):
        pipe.set_trunk(*trunk)
        pipe.training = True  # each file dict keeps the networks' outputs
        return score_on_files(pipe, recordings, files)

    jobs = [(*base, lambda: run(first, base_trunk, base_files))]
    for c in changes:
        if c.segmentation is not None:
            jobs.append((c.changed, c.variant, lambda c=c: run(
                build_block_trunk_pipeline(choice, segmentation_forward=c.segmentation), base_trunk,
                [r.as_pyannote_file() for r in recordings])))
        else:
            jobs.append((c.changed, c.variant, lambda c=c: run(build_block_trunk_pipeline(choice), c.trunk, base_files)))
    rows, ref = [], None
    with torch.inference_mode():
        for changed, variant, job in tqdm(jobs, desc="DER runs", disable=not progress):
            r = job()
            ref = ref or r
            t = r["totals"]
            rows.append({index[0]: changed, index[1]: variant, "DER strict (%)": 100 * t["der_strict"],
                         "DER FluidAudio (%)": 100 * t["der_fluidaudio"], **change_columns(ref["files"], r["files"]),
                         "speakers found (mean)": t["speakers_hyp_mean"],
                         "speakers (reference, mean)": t["speakers_ref_mean"]})
    return pd.DataFrame(rows).set_index(list(index)), ref["totals"]
