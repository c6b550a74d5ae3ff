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

from ..core.data import benchmark_set
from ..pipelines.registry import STAGES, Variant, get_variant
from .environment import environment
from .memory import PeakRSS
from .scoring import score
from .stats import der_change


def run_benchmark(variant="reference", *, profile: str = "full", split: str = "test",
                  repeats: int = 1, recordings=None, progress: bool = True, **variant_kwargs) -> dict:
    """Benchmark one variant (a registered name or a ``Variant``). Each file is timed ``repeats``
    times (median kept); one warm-up run on the first file precedes the timed runs."""
    torch.manual_seed(0)
    v = variant if isinstance(variant, Variant) else get_variant(variant, **variant_kwargs)
    recs = recordings if recordings is not None else benchmark_set(split, profile)
    v.run(recs[0])  # warm-up: lazy initialisation, allocator, caches of the first call
    hyps, timings = [], []
    with PeakRSS() as mem:
        for rec in tqdm(recs, desc=f"benchmark {v.name}", disable=not progress):
            runs = [v.run(rec) for _ in range(repeats)]
            hyps.append(runs[-1][0])
            timings.append({"stages": {s: statistics.median(r[1][s] for r in runs) for s in STAGES},
                            "wall_samples": [r[1]["total"] for r in runs]})
    scored = score(recs, hyps)
    files = scored["files"]
    for row, rec, timing in zip(files, recs, timings):
        row.update(stages=timing["stages"], rtfx=rec.duration / timing["stages"]["total"],
                   wall_samples=timing["wall_samples"])
    audio = sum(f["seconds"] for f in files)
    stage_sums = {s: sum(f["stages"][s] for f in files) for s in STAGES}
    totals = scored["totals"] | {"audio_seconds": audio, "wall_seconds": stage_sums["total"],
                                 "rtfx": audio / stage_sums["total"], "stage_seconds": stage_sums,
                                 "peak_rss_mib": mem.peak_mib, "files": len(files)}
    return {"variant": v.name, "description": v.description, "models": v.models, "profile": profile,
            "split": split, "repeats": repeats, "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "environment": environment(), "totals": totals, "files": files}


def subset_result(result: dict, uris: list[str]) -> dict:
    """A ``run_benchmark`` result restricted to the files ``uris`` (in that order), its totals
    recomputed from the per-file rows: corpus-level DER and its parts (errors summed / scored
    speech summed), stage seconds, RTFx and mean speaker counts. Peak RSS stays the whole run's."""
    by_uri = {f["uri"]: f for f in result["files"]}
    missing = [u for u in uris if u not in by_uri]
    if missing:
        raise ValueError(f"the result has no rows for {missing[:3]}")
    files = [by_uri[u] for u in uris]
    totals = {}
    for conv in ("strict", "fluidaudio"):
        scored = sum(f[f"scored_{conv}"] for f in files)
        for part in ("der", "missed", "false", "confusion"):
            totals[f"{part}_{conv}"] = sum(f[f"{part}_{conv}"] * f[f"scored_{conv}"] for f in files) / scored if scored else 0.0
    stages = {s: sum(f["stages"][s] for f in files) for s in STAGES}
    audio = sum(f["seconds"] for f in files)
    totals |= {"audio_seconds": audio, "wall_seconds": stages["total"], "rtfx": audio / stages["total"],
               "stage_seconds": stages, "peak_rss_mib": result["totals"]["peak_rss_mib"], "files": len(files),
               "speakers_hyp_mean": statistics.mean(f["speakers_hyp"] for f in files),
               "speakers_ref_mean": statistics.mean(f["speakers_ref"] for f in files)}
    return result | {"files": files, "totals": totals, "subset_of": result.get("created")}


def interleaved_speed(variants: list, recordings: list, *, repeats: int = 3, progress: bool = True,
                      **variant_kwargs) -> dict:
    """Wall seconds of each variant over ``recordings``, run interleaved: round 1 runs every
    variant over the files, then round 2, and so on (A B A B ...), so that a load spike lands on
    all of them. One warm-up file per variant first. Feed two variants' lists to
    ``measure.stats.speed_ratio`` for a median ratio with its spread.

    Returns ``{"seconds": {name: [wall per round]}, "audio_seconds", "files", "repeats"}``."""
    if repeats < 1 or not recordings:
        raise ValueError("need at least one repeat and one recording")
    built = [v if isinstance(v, Variant) else get_variant(v, **variant_kwargs) for v in variants]
    for v in built:
        v.run(recordings[0])
    seconds = {v.name: [] for v in built}
    for _ in tqdm(range(repeats), desc="interleaved rounds", disable=not progress):
        for v in built:
            seconds[v.name].append(sum(v.run(rec)[1]["total"] for rec in recordings))
    return {"seconds": seconds, "audio_seconds": sum(r.duration for r in recordings),
            "files": [r.uri for r in recordings], "repeats": repeats}


def compare_rows(a: dict, b: dict) -> list[dict]:
    """Side-by-side rows: value in A, value in B, and B/A (speed) or B-A (DER, points; the two DER
    rows carry the paired-bootstrap 95 % CI over files of ``measure.stats.der_change``)."""
    ta, tb = a["totals"], b["totals"]
    rows = []
    for convention, label in [("strict", "DER strict (%)"), ("fluidaudio", "DER FluidAudio-style (%)")]:
        key = f"der_{convention}"
        try:
            change = str(der_change(a["files"], b["files"], convention))
        except ValueError as e:
            change = f"{100 * (tb[key] - ta[key]):+.2f} pts (no CI: {e})"
        rows.append({"metric": label, "A": 100 * ta[key], "B": 100 * tb[key], "B vs A": change})
    for key, label in [("missed_strict", "miss, strict (%)"), ("false_strict", "false alarm, strict (%)"),
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


def file_rows(result: dict, stages: tuple[str, ...] = ("segmentation", "embedding", "clustering")) -> list[dict]:
    """One table row per file of a ``run_benchmark`` result: DER in both conventions (%), speaker
    counts (reference/hypothesis), RTFx and the seconds of each of ``stages``."""
    return [{"uri": f["uri"], "source": f["source"], "seconds": f["seconds"],
             "DER strict %": 100 * f["der_strict"], "DER FluidAudio %": 100 * f["der_fluidaudio"],
             "speakers (ref/hyp)": f"{f['speakers_ref']}/{f['speakers_hyp']}", "RTFx": f["rtfx"],
             **{f"{s} s": f["stages"][s] for s in stages}}
            for f in result["files"]]


def stage_shares(totals: dict, stages: tuple[str, ...] = STAGES[:-1]) -> dict[str, float]:
    """Percent of the total wall time spent in each stage."""
    return {s: 100 * totals["stage_seconds"][s] / totals["stage_seconds"]["total"] for s in stages}


def error_breakdown(totals: dict) -> dict[str, dict[str, float]]:
    """DER and its three parts (%) in both conventions: ``{convention: {part: percent}}``."""
    parts = {"DER": "der", "missed detection": "missed", "false alarm": "false", "confusion": "confusion"}
    return {label: {name: 100 * totals[f"{key}_{suffix}"] for name, key in parts.items()}
            for label, suffix in (("strict", "strict"), ("FluidAudio-style", "fluidaudio"))}
