"""Run a pipeline variant over the benchmark set; compare two result files.

This is the guide's "Testing Optimizations" section made real: ``benchmark`` writes accuracy
(DER, both conventions), speed (RTFx = audio seconds / wall seconds, per-stage split, peak RSS)
and the environment to JSON; ``compare`` prints ratios and DER deltas.
"""
from __future__ import annotations

import datetime
import statistics

import torch
from tqdm.auto import tqdm

from .bench import PeakRSS, environment
from .data import benchmark_set
from .metrics import DERAccumulator
from .pipeline import Variant, get_variant

STAGES = ("segmentation", "counting", "embedding", "clustering", "total")


def run_benchmark(variant="reference", *, profile: str = "full", split: str = "test",
                  repeats: int = 1, recordings=None, progress: bool = True, **variant_kwargs) -> dict:
    """Benchmark one variant (a registered name or a ``Variant``). Each file is timed ``repeats``
    times (median kept); one warm-up run on the first file precedes the timed runs."""
    torch.manual_seed(0)
    v = variant if isinstance(variant, Variant) else get_variant(variant, **variant_kwargs)
    recs = recordings if recordings is not None else benchmark_set(split, profile)
    v.run(recs[0])  # warm-up: lazy initialisation, allocator, caches of the first call
    acc = DERAccumulator()
    files = []
    with PeakRSS() as mem:
        for rec in tqdm(recs, desc=f"benchmark {v.name}", disable=not progress):
            runs = [v.run(rec) for _ in range(repeats)]
            hyp = runs[-1][0]
            stages = {s: statistics.median(r[1][s] for r in runs) for s in STAGES}
            row = acc.add(rec.uri, rec.reference, hyp, rec.uem)
            row.update(source=rec.source, seconds=rec.duration, stages=stages,
                       rtfx=rec.duration / stages["total"], speakers_ref=len(rec.reference.labels()),
                       speakers_hyp=len(hyp.labels()), wall_samples=[r[1]["total"] for r in runs])
            files.append(row)
    audio = sum(f["seconds"] for f in files)
    stage_sums = {s: sum(f["stages"][s] for f in files) for s in STAGES}
    totals = acc.totals() | {"audio_seconds": audio, "wall_seconds": stage_sums["total"],
                             "rtfx": audio / stage_sums["total"], "stage_seconds": stage_sums,
                             "peak_rss_mib": mem.peak_mib, "files": len(files)}
    return {"variant": v.name, "description": v.description, "models": v.models, "profile": profile,
            "split": split, "repeats": repeats, "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "environment": environment(), "totals": totals, "files": files}


def pipeline_totals(pipe, recordings, *, name: str, embedding_id: str, profile: str) -> dict:
    """DER (both conventions), speed totals and mean speaker counts of a built pyannote pipeline."""
    from .pipeline import run_pyannote

    v = Variant(name, "", lambda rec: run_pyannote(pipe, rec), models={"embedding": embedding_id})
    out = run_benchmark(v, recordings=recordings, profile=profile, progress=False)
    files = out["files"]
    return out["totals"] | {"speakers_hyp_mean": statistics.mean(f["speakers_hyp"] for f in files),
                            "speakers_ref_mean": statistics.mean(f["speakers_ref"] for f in files)}


def compare_rows(a: dict, b: dict) -> list[dict]:
    """Side-by-side rows: value in A, value in B, and B/A (speed) or B-A (DER, points)."""
    ta, tb = a["totals"], b["totals"]
    rows = []
    for key, label in [("der_strict", "DER strict (%)"), ("der_fluidaudio", "DER FluidAudio-style (%)"),
                       ("missed_strict", "miss, strict (%)"), ("false_strict", "false alarm, strict (%)"),
                       ("confusion_strict", "confusion, strict (%)")]:
        rows.append({"metric": label, "A": 100 * ta[key], "B": 100 * tb[key],
                     "B vs A": f"{100 * (tb[key] - ta[key]):+.2f} pts"})
    rows.append({"metric": "RTFx (x real time)", "A": ta["rtfx"], "B": tb["rtfx"],
                 "B vs A": f"{tb['rtfx'] / ta['rtfx']:.2f}x"})
    for s in STAGES:
        sa, sb = ta["stage_seconds"][s], tb["stage_seconds"][s]
        rows.append({"metric": f"{s} (s)", "A": sa, "B": sb,
                     "B vs A": f"{sa / sb:.2f}x faster" if sb > 0 else "n/a"})
    rows.append({"metric": "peak RSS (MiB)", "A": ta["peak_rss_mib"], "B": tb["peak_rss_mib"],
                 "B vs A": f"{tb['peak_rss_mib'] / ta['peak_rss_mib']:.2f}x"})
    return rows


def compare_warnings(a: dict, b: dict) -> list[str]:
    """Reasons a comparison may be unfair (different data, models or machine)."""
    out = []
    if [f["uri"] for f in a["files"]] != [f["uri"] for f in b["files"]]:
        out.append("the two runs scored different files")
    if a["models"].get("embedding") != b["models"].get("embedding"):
        out.append(f"embedding models differ: {a['models'].get('embedding')} vs {b['models'].get('embedding')}")
    if a["environment"]["cpu"] != b["environment"]["cpu"]:
        out.append("measured on different CPUs: speed ratios are not comparable")
    return out

