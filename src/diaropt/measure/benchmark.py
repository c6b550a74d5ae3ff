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

HARNESS = "shared-trunk-skip"  # the exact, faster stand-in that scores the reference on every file


def run_benchmark(variant="reference", *, profile: str = "full", split: str = "test",
                  repeats: int = 1, recordings=None, progress: bool = True, warmup: bool = True,
                  hypotheses: dict | None = None, **variant_kwargs) -> dict:
    """Benchmark one variant (a registered name or a ``Variant``). Each file is timed ``repeats``
    times (median kept); one warm-up run on the first file precedes the timed runs, unless
    ``warmup=False`` (runs kept for their DER only, whose timings nobody reads). ``hypotheses``,
    a dict, receives each file's output ``{uri: Annotation}``."""
    torch.manual_seed(0)
    v = variant if isinstance(variant, Variant) else get_variant(variant, **variant_kwargs)
    recs = recordings if recordings is not None else benchmark_set(split, profile)
    if warmup:
        v.run(recs[0])  # warm-up: lazy initialisation, allocator, caches of the first call
    hyps, timings = [], []
    with PeakRSS() as mem:
        for rec in tqdm(recs, desc=f"benchmark {v.name}", disable=not progress):
            runs = [v.run(rec) for _ in range(repeats)]
            hyps.append(runs[-1][0])
            timings.append({"stages": {s: statistics.median(r[1][s] for r in runs) for s in STAGES},
                            "wall_samples": [r[1]["total"] for r in runs]})
    if hypotheses is not None:
        hypotheses.update((rec.uri, hyp) for rec, hyp in zip(recs, hyps))
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


def corpus_rate(files: list[dict], part: str, convention: str, empty: float = float("nan")) -> float:
    """A corpus-level error rate (``part``: der, missed, false or confusion) of per-file score rows:
    their errors summed over their scored speech summed (``empty`` when nothing was scored)."""
    scored = sum(f[f"scored_{convention}"] for f in files)
    if not scored:
        return empty
    return sum(f[f"{part}_{convention}"] * f[f"scored_{convention}"] for f in files) / scored


def subset_result(result: dict, uris: list[str]) -> dict:
    """A ``run_benchmark`` result restricted to the files ``uris`` (in that order), its totals
    recomputed from the per-file rows: corpus-level DER and its parts (errors summed / scored
    speech summed), stage seconds, RTFx and mean speaker counts. Peak RSS stays the whole run's."""
    by_uri = {f["uri"]: f for f in result["files"]}
    missing = [u for u in uris if u not in by_uri]
    if missing:
        raise ValueError(f"the result has no rows for {missing[:3]}")
    files = [by_uri[u] for u in uris]
    untimed = [f["uri"] for f in files if "stages" not in f]
    if untimed:
        raise ValueError(f"{untimed[:3]} were scored but not timed by {result.get('variant')!r} "
                         f"(timed: its first {result['totals'].get('timed_files')} files)")
    stages = {s: sum(f["stages"][s] for f in files) for s in STAGES}
    totals = row_totals(files)
    totals |= {"wall_seconds": stages["total"], "rtfx": totals["audio_seconds"] / stages["total"],
               "stage_seconds": stages, "peak_rss_mib": result["totals"]["peak_rss_mib"]}
    return result | {"files": files, "totals": totals, "subset_of": result.get("created")}


def row_totals(files: list[dict]) -> dict:
    """The accuracy totals of per-file score rows: corpus-level DER and its parts in both
    conventions (errors summed / scored speech summed), audio seconds, files and mean speaker counts."""
    totals = {f"{part}_{conv}": corpus_rate(files, part, conv, empty=0.0)
              for conv in ("strict", "fluidaudio") for part in ("der", "missed", "false", "confusion")}
    return totals | {"audio_seconds": sum(f["seconds"] for f in files), "files": len(files),
                     "speakers_hyp_mean": statistics.mean(f["speakers_hyp"] for f in files),
                     "speakers_ref_mean": statistics.mean(f["speakers_ref"] for f in files)}


def reference_with_harness(recordings: list, *, timed_files: int, profile: str, embedding: str,
                           harness=HARNESS, reference="reference", scored: dict | None = None) -> tuple[dict, dict]:
    """The reference pipeline's result on ``recordings``, its slowest part shared.

    pyannote's reference embeds every (window, local speaker) pair through the whole network, so
    it is the slowest pipeline of the book. Its output is also what
    the exact shared-trunk harness (``harness``, ``pipelines.trunks``: the embedding trunk run
    once per window, each speaker's mask pooled from the same frames, inactive speakers skipped)
    produces, about three times faster. So the reference runs (timed, after a warm-up) on the
    first ``timed_files`` recordings, the harness on all of them, and on the timed files their
    outputs must be the same diarization (DER of one against the other exactly 0), or
    ``ValueError``: the harness then cannot stand in for the reference, and nothing is saved.
    (``harness`` and ``reference`` are registered names or ``Variant`` objects.)

    Returns (reference, harness): ``harness`` is its own ``run_benchmark`` result; ``reference``
    has one row per recording, the reference's own rows for the timed files (with their
    timings) and the harness's DER rows for the others (``scored_by`` names which; no timing);
    its DER totals are over all recordings, its timing totals (``rtfx``, ``wall_seconds``,
    ``stage_seconds``, ``timed_audio_seconds``) over the timed files, and peak RSS is the
    reference's own.

    ``scored``: a harness run that already scored every recording (chapter 00's
    ``measure.tuning.clustering_runs`` over the realistic test split, networks in worker
    threads). The harness then runs on the timed files only (for its timing and the identity
    check), ``scored`` must give the reference's own per-file DER and speaker count on each of
    them (or ``ValueError``), and both returned results take ``scored``'s rows for the other
    files: each is then timed on the timed files and scored on all of them."""
    from ..core.metrics import der

    if not 1 <= timed_files <= len(recordings):
        raise ValueError(f"timed_files must be 1..{len(recordings)}, got {timed_files}")
    timed = recordings[:timed_files]
    if scored is not None:
        have = {f["uri"] for f in scored["files"]}
        if missing := [r.uri for r in recordings if r.uri not in have]:
            raise ValueError(f"the harness run passed as scored did not score {missing[:3]}")
    ref_h, harn_h = {}, {}
    ref = run_benchmark(reference, recordings=timed, profile=profile, embedding=embedding, hypotheses=ref_h)
    harn = run_benchmark(harness, recordings=timed if scored is not None else recordings, profile=profile,
                         embedding=embedding, hypotheses=harn_h)
    harness = harn["variant"]
    differ = {}
    for r in timed:
        a, b = ref_h[r.uri], harn_h[r.uri]
        if (d := der(a, b, r.uem)) != 0.0 or len(a.labels()) != len(b.labels()):
            differ[r.uri] = d
    if differ:
        raise ValueError(f"the {harness!r} harness does not reproduce the reference on {sorted(differ)} "
                         f"(DER of one against the other: {differ}); it cannot stand in for the reference")
    if scored is None:
        ref_all = _scored_by(ref, harn["files"], harness, "reference")
        ref_all["totals"]["harness_identical_files"] = len(timed)
        return ref_all, harn
    rows = {f["uri"]: f for f in scored["files"]}
    apart = {f["uri"]: (f["der_strict"], rows[f["uri"]]["der_strict"]) for f in ref["files"]
             if abs(f["der_strict"] - rows[f["uri"]]["der_strict"]) > 1e-9
             or f["speakers_hyp"] != rows[f["uri"]]["speakers_hyp"]}
    if apart:
        raise ValueError(f"the harness run passed as scored does not reproduce the reference on {sorted(apart)} "
                         f"(strict DER, reference vs scored: {apart})")
    everything = [rows[r.uri] for r in recordings]
    ref_all = _scored_by(ref, everything, harness, "reference")
    ref_all["totals"]["harness_identical_files"] = len(timed)
    return ref_all, _scored_by(harn, everything, harness, harness)


def _scored_by(timed: dict, rows: list[dict], harness: str, own: str) -> dict:
    """``timed`` (a ``run_benchmark`` result on the first files) extended to every file of
    ``rows`` (a harness's per-file score rows, in order): its own rows (with timings, ``scored_by``
    ``own``) where it ran, the harness's (timings dropped) elsewhere; accuracy totals over all
    files, timing totals and peak RSS of ``timed``'s own run."""
    own_rows = {f["uri"]: f | {"scored_by": own} for f in timed["files"]}
    timing = ("stages", "rtfx", "wall_samples")  # the harness's own timings: not the timed run's
    files = [own_rows.get(f["uri"]) or {k: v for k, v in f.items() if k not in timing} | {"scored_by": harness}
             for f in rows]
    t = timed["totals"]
    totals = row_totals(files) | {
        "timed_audio_seconds": t["audio_seconds"], "wall_seconds": t["wall_seconds"], "rtfx": t["rtfx"],
        "stage_seconds": t["stage_seconds"], "peak_rss_mib": t["peak_rss_mib"], "timed_files": t["files"],
        "harness": harness}
    return timed | {"files": files, "totals": totals}


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
    return der_rows(a, b) + speed_rows(a, b)


def der_rows(a: dict, b: dict) -> list[dict]:
    """``compare_rows``' accuracy rows: DER in both conventions (B-A with its paired CI) and the
    strict error's three parts. Needs per-file score rows only, no timings."""
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
    return rows


def speed_rows(a: dict, b: dict) -> list[dict]:
    """``compare_rows``' speed rows: RTFx (B/A), each stage's seconds per audio minute, peak RSS."""
    ta, tb = a["totals"], b["totals"]
    rows = []
    rows.append({"metric": "RTFx (x real time)", "A": ta["rtfx"], "B": tb["rtfx"],
                 "B vs A": f"{tb['rtfx'] / ta['rtfx']:.2f}x"})
    # per minute of the audio each run timed (a reference scored through its harness timed fewer files)
    ma, mb = (timed_minutes(t) for t in (ta, tb))
    for s in STAGES:
        sa, sb = ta["stage_seconds"][s] / ma, tb["stage_seconds"][s] / mb
        rows.append({"metric": f"{s} (s per audio minute)", "A": sa, "B": sb,
                     "B vs A": f"{sa / sb:.2f}x faster" if sb > 0 else "n/a"})
    rows.append({"metric": "peak RSS (MiB)", "A": ta["peak_rss_mib"], "B": tb["peak_rss_mib"],
                 "B vs A": f"{tb['peak_rss_mib'] / ta['peak_rss_mib']:.2f}x"})
    return rows


def partly_timed(totals: dict) -> bool:
    """Whether a run's timings cover only some of its files (a reference scored through its
    harness, ``reference_with_harness``)."""
    return totals.get("timed_files", totals.get("files")) != totals.get("files")


def timed_uris(result: dict) -> list[str]:
    """The files a run timed (every file, unless it was scored through a harness)."""
    return [f["uri"] for f in result["files"] if "stages" in f]


def timed_minutes(totals: dict) -> float:
    """Minutes of audio a run's timings cover: all its files, or the timed ones of a reference
    scored through its harness (``reference_with_harness``)."""
    return totals.get("timed_audio_seconds", totals["audio_seconds"]) / 60


def compare_warnings(a: dict, b: dict) -> list[str]:
    """Reasons a comparison may be unfair (different data, models or machine)."""
    out = []
    if [f["uri"] for f in a["files"]] != [f["uri"] for f in b["files"]]:
        out.append("the two runs scored different files")
    for name, r in (("A", a), ("B", b)):
        t = r["totals"]
        if partly_timed(t):
            out.append(f"{name}'s speed comes from its first {t['timed_files']} of {t['files']} files "
                       f"({timed_minutes(t):.1f} min); its DER from all of them (harness: {t.get('harness')})")
    if a["models"].get("embedding") != b["models"].get("embedding"):
        out.append(f"embedding models differ: {a['models'].get('embedding')} vs {b['models'].get('embedding')}")
    if a["environment"]["cpu"] != b["environment"]["cpu"]:
        out.append("measured on different CPUs: speed ratios are not comparable")
    return out


def file_rows(result: dict, stages: tuple[str, ...] = ("segmentation", "embedding", "clustering")) -> list[dict]:
    """One table row per file of a ``run_benchmark`` result: DER in both conventions (%), speaker
    counts (reference/hypothesis), RTFx and the seconds of each of ``stages`` (NaN for a file
    that was scored but not timed, ``reference_with_harness``), and who scored it."""
    nan = float("nan")
    return [{"uri": f["uri"], "source": f["source"], "seconds": f["seconds"],
             "DER strict %": 100 * f["der_strict"], "DER FluidAudio %": 100 * f["der_fluidaudio"],
             "speakers (ref/hyp)": f"{f['speakers_ref']}/{f['speakers_hyp']}", "RTFx": f.get("rtfx", nan),
             **{f"{s} s": f["stages"][s] if "stages" in f else nan for s in stages},
             **({"scored by": f["scored_by"]} if "scored_by" in f else {})}
            for f in result["files"]]


def by_source(result: dict, key: str = "source") -> list[dict]:
    """Per data source (real AMI, pyannote's sample, simulated; or per ``key="condition"``: clean,
    reverberant, telephone, noisy, ... of the realistic splits, the real files under their source)
    and for all files: files, minutes, corpus-level DER in both conventions (errors summed / scored
    speech summed over the group's files) and speaker-count accuracy: the share of files whose
    speaker count was found exactly, and the files with too few and too many speakers."""
    groups: dict[str, list[dict]] = {}
    for f in result["files"]:
        groups.setdefault(f[key], []).append(f)
    groups["all"] = list(result["files"])
    rows = []
    for source, files in groups.items():
        row = {key: source, "files": len(files), "minutes": sum(f["seconds"] for f in files) / 60}
        for conv, label in (("strict", "DER strict (%)"), ("fluidaudio", "DER FluidAudio-style (%)")):
            row[label] = 100 * corpus_rate(files, "der", conv)
        row |= {"speaker count exact (%)": 100 * sum(f["speakers_hyp"] == f["speakers_ref"] for f in files) / len(files),
                "too few": sum(f["speakers_hyp"] < f["speakers_ref"] for f in files),
                "too many": sum(f["speakers_hyp"] > f["speakers_ref"] for f in files)}
        rows.append(row)
    return rows


def stage_shares(totals: dict, stages: tuple[str, ...] = STAGES[:-1]) -> dict[str, float]:
    """Percent of the total wall time spent in each stage."""
    return {s: 100 * totals["stage_seconds"][s] / totals["stage_seconds"]["total"] for s in stages}


def error_breakdown(totals: dict) -> dict[str, dict[str, float]]:
    """DER and its three parts (%) in both conventions: ``{convention: {part: percent}}``."""
    parts = {"DER": "der", "missed detection": "missed", "false alarm": "false", "confusion": "confusion"}
    return {label: {name: 100 * totals[f"{key}_{suffix}"] for name, key in parts.items()}
            for label, suffix in (("strict", "strict"), ("FluidAudio-style", "fluidaudio"))}
