"""Chapter 90, the fast pipeline: which lever bought what, and how far from the compute floor.

``optimized`` composes several levers at once (block embedding trunk, a 2.5 s segmentation
step, ONNX Runtime, segmentation batch 8). The ablation runs the steps between the reference
and ``optimized`` one lever at a time (``ABLATION``) on the same files, which gives the
speed/DER frontier (``frontier_rows``) and the priority list of chapter 90 (``priority_table``:
speed-up of each step over the previous one, with the batching and int8 figures of their
chapters), on the realistic test split. The first step is the harness that scores the
reference in chapter 00, whose run there is reused; the reference itself is timed on its first
files only, so every speed-up over it is taken on those files (``point``, ``speedup``), while
every DER change is over the whole split, with its paired bootstrap CI (``frontier_rows``).
``optimized_floor`` counts the network work ``optimized`` does on the test split (segmentation
windows at its step, one embedding trunk per 10 s block) and divides it by the CPU's measured
fp32 GEMM peak: the time a perfect kernel would need for the same work.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.constants import WINDOW_SAMPLES, WINDOW_SECONDS
from ..pipelines.optimized import OPTIMIZED, block_trunk_variant, optimized_variant
from .benchmark import partly_timed, reference_with_harness, run_benchmark, subset_result
from .cost import count_flops, n_windows
from .environment import matmul_peak_gflops

# The first step is the exact harness that scores the reference in chapter 00 (shared trunk,
# inactive speakers skipped): its run there, saved as ``reference-harness-<profile>``, is reused.
HARNESS_STEP = "shared trunk, inactive skipped (exact, step 1 s)"
# the reference's own pipeline at optimized's step (``stock_at_step``)
STOCK_STEP = f"stock pyannote, step {10 * OPTIMIZED['segmentation_step']:g} s"
# label -> factory(embedding name) -> a registered variant name or a ``Variant``
ABLATION: dict[str, Callable] = {
    HARNESS_STEP: lambda embedding: "shared-trunk-skip",
    "block trunk, step 1 s (torch)": lambda embedding: block_trunk_variant("block trunk, step 1 s (torch)", embedding, 0.1),
    "block trunk, step 2.5 s (torch)": lambda embedding: block_trunk_variant("block trunk, step 2.5 s (torch)", embedding, 0.25),
    "optimized, step 5 s": lambda embedding: optimized_variant(embedding, segmentation_step=0.5),
}

# (lever, the variant after it, the variant before it): the path from the reference to optimized
STEPS_TAKEN = [
    ("do less embedding work: shared trunk, skip silent speakers", HARNESS_STEP, "reference"),
    ("embed each second once: block trunk", "block trunk, step 1 s (torch)", HARNESS_STEP),
    ("coarser segmentation step (2.5 s)", "block trunk, step 2.5 s (torch)", "block trunk, step 1 s (torch)"),
    ("ONNX Runtime fp32 for both networks (and telephone values for band-limited files)", "optimized",
     "block trunk, step 2.5 s (torch)"),
]
# the step alone, on stock pyannote: shown beside the path (not a step of it)
STEP_ALONE = (f"the {10 * OPTIMIZED['segmentation_step']:g} s step alone, on stock pyannote", STOCK_STEP, "reference")


def point(result: dict, timed_uris: list[str] | None = None) -> dict:
    """A ``run_benchmark`` result as an ablation point: its totals, plus ``rtfx_timed``, its RTFx
    on ``timed_uris`` (the files the reference itself was timed on; chapter 00 scores the others
    through the exact harness), so that speed ratios to the reference compare the same audio, and
    ``per_file``, its per-file score rows (for the paired CI of its DER change)."""
    t = dict(result["totals"]) | {"per_file": result["files"]}
    if timed_uris:
        t["rtfx_timed"] = subset_result(result, timed_uris)["totals"]["rtfx"]
    return t


def run_ablation(labels: list[str], recordings: list, *, profile: str, embedding: str, points: dict | None = None,
                 timed_uris: list[str] | None = None) -> dict:
    """Benchmark the ablation variants ``labels`` (keys of ``ABLATION``, in that order) on
    ``recordings``; returns ``points`` (label -> ``point``) extended by them."""
    points = dict(points or {})
    for label in labels:
        variant = ABLATION[label](embedding)
        points[label] = point(run_benchmark(variant, recordings=recordings, profile=profile, embedding=embedding,
                                            progress=False), timed_uris)
    return points


def stock_at_step(recordings: list, *, timed_files: int, profile: str, embedding: str,
                  segmentation_step: float = OPTIMIZED["segmentation_step"]) -> dict:
    """Stock pyannote at ``optimized``'s segmentation step, measured as chapter 00 measures the
    reference (``benchmark.reference_with_harness``): pyannote's own pipeline timed on the first
    ``timed_files`` recordings, the exact harness at the same step scoring all of them (their
    outputs checked identical on the timed files). It separates what the step alone buys from
    what the pipeline changes buy."""
    from ..pipelines.reference import build_reference_pipeline, pipeline_variant
    from ..pipelines.trunks import build_shared_trunk_pipeline

    at = f"step {10 * segmentation_step:g} s"
    reference = pipeline_variant(f"reference, {at}", build_reference_pipeline(embedding, segmentation_step=segmentation_step),
                                 f"pyannote's SpeakerDiarization as configured, segmentation {at}")
    harness = pipeline_variant(f"shared-trunk-skip, {at}", build_shared_trunk_pipeline(
        embedding, skip_inactive=True, segmentation_step=segmentation_step), f"the exact harness, segmentation {at}")
    stock, _ = reference_with_harness(recordings, timed_files=timed_files, profile=profile, embedding=embedding,
                                      harness=harness, reference=reference)
    return stock


def _timed_rtfx(t: dict) -> float:
    return t.get("rtfx_timed", t["rtfx"])


def speedup(after: dict, before: dict) -> float:
    """RTFx of ``after`` over ``before``: on the whole split, or on the reference's timed files
    when either point is a reference timed on part of it."""
    if partly_timed(after) or partly_timed(before):
        return _timed_rtfx(after) / _timed_rtfx(before)
    return after["rtfx"] / before["rtfx"]


def frontier_rows(points: dict, reference: dict) -> list[dict]:
    """One row per variant: RTFx (its own run: the timed files for a point timed on part of the
    split, ``point``), ratio to the reference (on the files the reference
    was timed on, ``speedup``), DER (both conventions), strict DER change with its paired bootstrap
    95 % CI over files (when both points carry ``per_file`` rows), peak RSS."""
    from .stats import der_change

    def ci(t):
        if "per_file" not in t or "per_file" not in reference:
            return "n/a"
        c = der_change(reference["per_file"], t["per_file"])
        return f"[{c.low:+.2f}, {c.high:+.2f}]"

    return [{"variant": k, "RTFx (its own files)": t["rtfx"], "x reference": speedup(t, reference),
             "DER strict (%)": 100 * t["der_strict"], "DER FluidAudio-style (%)": 100 * t["der_fluidaudio"],
             "Δ strict vs reference (pts)": 100 * (t["der_strict"] - reference["der_strict"]),
             "95 % CI of Δ": ci(t), "peak RSS (MiB)": t["peak_rss_mib"]} for k, t in points.items()]


def priority_table(points: dict, batching=None, quantization=None):
    """The levers ranked by their end-to-end speed-up over the previous step (1 = first), with
    their strict DER change; batching and CPU int8 from their chapters' summaries (skipped when
    a summary is missing)."""
    import pandas as pd

    prio = []
    for lever, after, before in [*STEPS_TAKEN, STEP_ALONE]:
        if after in points and before in points:
            a, b = points[after], points[before]
            prio.append({"lever": lever, "speed-up over the previous step": speedup(a, b),
                         "Δ DER strict (pts)": 100 * (a["der_strict"] - b["der_strict"])})
    if batching is not None:
        prio.append({"lever": "batching (segmentation 8)", "speed-up over the previous step": batching["pipe_gain"],
                     "Δ DER strict (pts)": 0.0})
    if quantization is not None:
        prio.append({"lever": "fp16 / int8 arithmetic on CPU",
                     "speed-up over the previous step": max(quantization["speed_int8"].values()),
                     "Δ DER strict (pts)": quantization["der_int8_points"]})
    speed = "speed-up over the previous step"
    table = pd.DataFrame(prio, columns=["lever", speed, "Δ DER strict (pts)"])
    table = table.sort_values(speed, ascending=False).reset_index(drop=True)
    table.index += 1
    return table


def network_gflops(embedding_choice) -> dict:
    """GFLOPs of one 10 s window: segmentation-3.0, and the CAM++ trunk (frames, before pooling;
    NaN for another embedding model, whose trunk is not split out)."""
    from ..core.models import load_segmentation
    from ..portable.plain import CAMPPlusModule, PlainSegmentation

    window = torch.zeros(1, 1, WINDOW_SAMPLES)
    seg = count_flops(PlainSegmentation(load_segmentation()), window)["total"] / 1e9
    trunk = (count_flops(CAMPPlusModule(embedding_choice.model, front="conv", output="frames"), window)["total"] / 1e9
             if embedding_choice.name == "campplus" else math.nan)
    return {"segmentation": seg, "trunk": trunk}


def optimized_floor(result: dict, embedding_choice, step_seconds: float) -> dict:
    """The network work of an ``optimized`` run (``run_benchmark`` result) at this CPU's fp32
    GEMM peak: segmentation windows every ``step_seconds``, one trunk per 10 s block per file."""
    gflops = network_gflops(embedding_choice)
    peak = matmul_peak_gflops()
    files, totals = result["files"], result["totals"]
    work = sum(n_windows(f["seconds"], step_seconds) for f in files) * gflops["segmentation"]
    work += sum(-(-f["seconds"] // WINDOW_SECONDS) for f in files) * gflops["trunk"]
    floor_s = work / peak
    return {"GFLOPs done (segmentation + trunk)": work, "CPU fp32 GEMM peak (GFLOP/s)": peak,
            "floor at peak (s)": floor_s, "measured (s)": totals["wall_seconds"],
            "measured / floor": totals["wall_seconds"] / floor_s, "achieved GFLOP/s": work / totals["wall_seconds"],
            "RTFx at the floor": totals["audio_seconds"] / floor_s}
