"""Tuning on the tune split only: the reference's clustering (threshold and minimum cluster size)
and the streaming diarizer's new-speaker threshold, frozen into ``configs/reference.yaml``.

speaker-diarization-3.1's clustering values were tuned on WeSpeaker ResNet34 cosine distances and
on long real meetings. CAM++ distances live on another scale, and 3.1's minimum cluster size (12
embeddings: (10 s window, speaker) pairs with enough clean speech; pyannote lowers it to a tenth of
the embeddings on short files) merges a speaker who talks in too few windows into another one, as
in the "collapsed" two-speaker files of the first test split. So both
are tuned jointly with pyannote.pipeline's ``Optimizer`` (optuna TPE, seeded) on the realistic
*tune* split (``core.meetings``), minimising strict DER (collar 0, overlap scored); the
segmentation values and the linkage method keep 3.1's values. The exact harness
(``harness_pipeline``) computes each file's segmentation and embeddings once; each trial only
re-clusters. ``clustering_runs`` uses the same trick to score other clustering settings (3.1's
values, the true number of speakers) on the test split at the cost of one run.

The streaming threshold is grid-searched by replaying recorded window analyses
(``techniques.streaming.sweep``): the networks run once per file.

``optimized``'s segmentation step is a design choice, so it is made on the *dev* split
(``choose_step``): the coarsest step whose strict DER stays within a tolerance of the finest
step's (chapter 90 passes the book's DER target, ``book.claims.TARGET``). So are its clustering
values at that step (``choose_clustering``, lowest strict DER on dev): the minimum cluster size
counts embeddings, and a coarser step yields fewer per second of speech, so the candidates are
the reference's values as they are, the size rescaled to the same seconds
(``core.config.optimized_params``), and both values re-tuned for ``optimized`` on the tune split
(``tune_clustering(pipeline="optimized")``, ``python -m diaropt tune --pipeline optimized``).
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import yaml

from ..core.config import (
    CONFIG,
    REFERENCE_STEP,
    config_block,
    optimized_params,
    reference_params,
    rescaled,
    telephone_params,
    write_config,
)
from ..core.models import choose_embedding

TUNED_CLUSTERING = ("threshold", "min_cluster_size")  # tuned jointly; the linkage method stays 3.1's


def harness_pipeline(embedding: str = "campplus", params: dict | None = None):
    """The exact stand-in for the reference (``measure.benchmark.HARNESS``: shared trunk, inactive
    speakers skipped; ``tests/test_fusion.py``) in pyannote's training mode: each file's
    segmentation and embeddings are computed on its first call and kept in the file's dict, so
    later calls on the same dicts only re-cluster."""
    from ..pipelines.trunks import build_shared_trunk_pipeline

    pipe = build_shared_trunk_pipeline(embedding, skip_inactive=True, params=params)
    pipe.training = True
    return pipe


def optimized_harness(embedding: str = "campplus", params: dict | None = None):
    """The ``optimized`` pipeline in pyannote's training mode (networks once per file dict, as
    ``harness_pipeline``)."""
    from ..pipelines.optimized import build_optimized_pipeline

    pipe = build_optimized_pipeline(embedding, params=params)
    pipe.training = True
    return pipe


def _frozen(pipeline: str, embedding: str, config: Path = CONFIG) -> dict:
    from ..pipelines.optimized import OPTIMIZED

    if pipeline == "reference":
        return reference_params(embedding, config)
    if pipeline == "optimized":
        return optimized_params(embedding, OPTIMIZED["segmentation_step"], config)
    raise ValueError(f"pipeline must be 'reference' or 'optimized', got {pipeline!r}")


HARNESSES = {"reference": harness_pipeline, "optimized": optimized_harness}


def tune_clustering(embedding: str = "campplus", n_iterations: int = 80, profile: str = "full",
                    seed: int = 0, config: Path = CONFIG, recordings=None, pipeline: str = "reference") -> dict:
    """Tune the clustering threshold and minimum cluster size jointly on the tune split.

    pyannote.pipeline's ``Optimizer`` (optuna TPE, seeded, warm-started from the frozen values)
    minimises the corpus-level strict DER (collar 0, overlap scored) of ``pipeline`` (the exact
    harness of the reference, or ``optimized``) over the realistic tune split
    (``core.meetings.evaluation_set("tune")``); the segmentation values and the linkage method stay
    frozen. The ranges are pyannote's own (threshold 0-2, minimum cluster size 1-20)."""
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.pipeline import Optimizer

    from ..core.meetings import evaluation_set
    from ..core.metrics import CONVENTIONS

    start = _frozen(pipeline, embedding, config)
    pipe = HARNESSES[pipeline](embedding, params=start)
    pipe.legacy = True  # the optimizer scores Annotations
    # pyannote's get_metric() maps speakers greedily; the book's strict DER maps them optimally
    pipe.get_metric = lambda: DiarizationErrorRate(**CONVENTIONS["strict"])
    pipe.freeze({"segmentation": start["segmentation"],
                 "clustering": {k: v for k, v in start["clustering"].items() if k not in TUNED_CLUSTERING}})
    recs = recordings if recordings is not None else evaluation_set("tune", profile)
    files = [r.as_pyannote_file() for r in recs]
    optimizer = Optimizer(pipe, sampler="TPESampler", seed=seed)
    warm = {"clustering": {k: start["clustering"][k] for k in TUNED_CLUSTERING}}
    if pipeline == "optimized":  # also try the reference's values as they are (the count unscaled)
        as_is = reference_params(embedding, config)["clustering"]
        optimizer.study_.enqueue_trial(pipe._flatten({"clustering": {k: as_is[k] for k in TUNED_CLUSTERING}}))
    result = optimizer.tune(files, n_iterations=n_iterations, warm_start=warm, show_progress=False)
    best = result["params"]["clustering"]
    return {"threshold": float(best["threshold"]), "min_cluster_size": int(best["min_cluster_size"]),
            "loss": float(result["loss"]), "start": warm["clustering"], "n_iterations": n_iterations,
            "files": [f["uri"] for f in files], "minutes": sum(r.duration for r in recs) / 60,
            "profile": profile, "seed": seed, "split": "tune (core.meetings)", "pipeline": pipeline}


def networks_in_threads(files: list[dict], embedding: str, params: dict, workers: int = 2,
                        progress: bool = True) -> None:
    """Run the harness's networks on ``files`` (pyannote file dicts) with ``workers`` threads, each
    with its own training-mode harness pipeline (pyannote pipelines hold state) and one compute
    thread (a mode the parallel chapter measured; here CAM++'s trunk dominates, so two 1-thread
    workers gain little over one 2-thread pipeline, but never lose). Each dict is left
    holding its segmentation and embeddings; ``adopt_embeddings`` hands them to another harness
    pipeline. The longest files go first, so the threads finish together."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from tqdm.auto import tqdm

    local, build = threading.local(), threading.Lock()

    def task(f):
        if not hasattr(local, "pipe"):
            torch.set_num_threads(1)
            with build:
                local.pipe = harness_pipeline(embedding, params=params)
        local.pipe(f)

    order = sorted(files, key=lambda f: -f["waveform"].shape[-1])
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(tqdm(pool.map(task, order), total=len(order), desc=f"networks ({workers} threads)",
                      disable=not progress))
    finally:
        torch.set_num_threads(threads)


def clustering_runs(recordings: list, settings: dict[str, dict], *, embedding: str = "campplus",
                    progress: bool = True, workers: int = 1, pipeline: str = "reference") -> dict[str, dict]:
    """Several clustering settings of ``pipeline`` (the reference through its exact harness, or
    ``optimized``) scored on the same segmentations and embeddings.

    ``settings``: ``{name: {"clustering": {overrides of the frozen clustering values}, "oracle_count":
    bool}}``; ``oracle_count`` gives pyannote's call each file's true number of speakers
    (``num_speakers``), which separates the clustering's counting error from the embeddings'
    quality. The networks run once per file (``harness_pipeline``; in ``workers`` threads when more
    than one, ``networks_in_threads``), each setting only re-clusters.
    Returns ``{name: {"files": per-file score rows, "totals": ..., "clustering": the values used}}``."""
    from tqdm.auto import tqdm

    from .scoring import score_on_files

    frozen = _frozen(pipeline, embedding)
    pipe = HARNESSES[pipeline](embedding, params=frozen)
    files = [r.as_pyannote_file() for r in recordings]
    if workers > 1 and pipeline != "reference":
        raise ValueError("worker threads: the reference's harness only (optimized's runtime uses both cores)")
    if workers > 1:
        networks_in_threads(files, embedding, frozen, workers, progress)
        for f in files:
            pipe.adopt_embeddings(f)
    out = {}
    for name, setting in tqdm(settings.items(), desc="clustering settings", disable=not progress):
        clustering = frozen["clustering"] | setting.get("clustering", {})
        pipe.instantiate({"segmentation": frozen["segmentation"], "clustering": clustering})
        oracle = bool(setting.get("oracle_count"))
        out[name] = score_on_files(pipe, recordings, files, oracle) | {"clustering": clustering, "oracle_count": oracle}
    return out


def choose_step(recordings: list, steps: list[float], *, profile: str, tolerance: float,
                embedding: str = "campplus") -> tuple[list[dict], float]:
    """``optimized`` at each segmentation step (fractions of the 10 s window) on ``recordings``
    (the dev split): one row per step (seconds, RTFx of its single run, DER in both conventions,
    speakers found), and the chosen step: the coarsest whose strict DER is at most ``tolerance``
    points above that of the finest step."""
    from ..pipelines.optimized import optimized_variant
    from .benchmark import run_benchmark

    if not steps:
        raise ValueError("no steps to choose from")
    rows = []
    for step in sorted(steps):
        t = run_benchmark(optimized_variant(embedding, segmentation_step=step), recordings=recordings,
                          profile=profile, progress=False, warmup=False)["totals"]
        rows.append({"step (s)": 10 * step, "fraction": step, "RTFx": t["rtfx"], "DER strict (%)": 100 * t["der_strict"],
                     "DER FluidAudio-style (%)": 100 * t["der_fluidaudio"], "speakers found (mean)": t["speakers_hyp_mean"],
                     "speakers (reference, mean)": t["speakers_ref_mean"]})
    finest = rows[0]["DER strict (%)"]
    for r in rows:
        r["Δ strict vs finest (pts)"] = r["DER strict (%)"] - finest
        r["within tolerance"] = r["Δ strict vs finest (pts)"] <= tolerance
    chosen = max(r["fraction"] for r in rows if r["within tolerance"])
    return rows, chosen


def clustering_candidates(embedding: str, tuned: dict | None = None) -> dict[str, dict]:
    """The clustering values ``optimized`` could use at its step: the reference's as they are, the
    same values with the minimum cluster size rescaled to the same seconds of speech (what
    ``core.config.optimized_params`` gives when no ``optimized`` block is configured), and, when
    given, values re-tuned on the tune split for ``optimized`` (``tune_clustering(pipeline="optimized")``)."""
    from ..pipelines.optimized import OPTIMIZED

    ref = {k: reference_params(embedding)["clustering"][k] for k in TUNED_CLUSTERING}
    out = {"the reference's values as they are": ref,
           "minimum size rescaled to the same seconds": rescaled(ref, REFERENCE_STEP, OPTIMIZED["segmentation_step"])}
    if tuned is not None:
        out["re-tuned on tune at the step"] = {k: tuned[k] for k in TUNED_CLUSTERING}
    return out


def choose_clustering(recordings: list, candidates: dict[str, dict], *, embedding: str = "campplus",
                      progress: bool = False) -> tuple[list[dict], str]:
    """``optimized`` with each candidate clustering (``{name: {threshold, min_cluster_size}}``) on
    ``recordings`` (the dev split), its networks run once (``clustering_runs``): one row per
    candidate (DER in both conventions, files whose speaker count is exact, the strict change
    against the first candidate with its paired bootstrap CI), and the chosen candidate: the
    lowest strict DER."""
    from .stats import der_change

    if not candidates:
        raise ValueError("no clustering candidates to choose from")
    runs = clustering_runs(recordings, {k: {"clustering": v} for k, v in candidates.items()}, embedding=embedding,
                           progress=progress, pipeline="optimized")
    first = next(iter(runs.values()))["files"]
    rows = []
    for name, run in runs.items():
        t, files = run["totals"], run["files"]
        rows.append({"candidate": name, "threshold": run["clustering"]["threshold"],
                     "min cluster size": run["clustering"]["min_cluster_size"],
                     "DER strict (%)": 100 * t["der_strict"], "DER FluidAudio-style (%)": 100 * t["der_fluidaudio"],
                     "files with the true count": sum(f["speakers_hyp"] == f["speakers_ref"] for f in files),
                     "strict change vs first (pts, 95 % CI)": str(der_change(first, files))})
    chosen = min(rows, key=lambda r: r["DER strict (%)"])["candidate"]
    return rows, chosen


def write_tuned(embedding: str, tuned: dict, config: Path = CONFIG) -> None:
    """Freeze the tuned clustering values into the committed config (other blocks untouched): the
    reference's ``clustering``, or, for ``optimized``, an ``optimized`` block with the step they
    were tuned at (``core.config.optimized_params`` reads it)."""
    from ..pipelines.optimized import OPTIMIZED

    cfg = yaml.safe_load(Path(config).read_text())
    block = cfg[embedding]
    provenance = {"strict_der_on_tune_split": round(tuned["loss"], 4), "tuned": list(TUNED_CLUSTERING),
                  "split": tuned["split"], "minutes": round(tuned["minutes"], 1),
                  "n_iterations": tuned["n_iterations"], "profile": tuned["profile"], "seed": tuned["seed"],
                  "files": len(tuned["files"]), "started_from": tuned["start"],
                  "date": datetime.date.today().isoformat()}
    if tuned.get("pipeline", "reference") == "optimized":
        block["optimized"] = {"clustering": {k: tuned[k] for k in TUNED_CLUSTERING},
                              "step": OPTIMIZED["segmentation_step"], "tuned": provenance}
    else:
        for key in TUNED_CLUSTERING:
            block["clustering"][key] = tuned[key]
        block["tuned"] = provenance
    write_config(cfg, config)


def tune_online_threshold(embedding: str = "campplus", step: float = 1.0, latency: float = 5.0,
                          profile: str = "full", thresholds=None) -> dict:
    """Grid-search the new-speaker threshold on the tune split (strict DER), by replay."""
    from ..core.meetings import evaluation_set
    from ..pipelines.streaming import build_analyzer
    from ..techniques.streaming import record_windows, sweep

    thresholds = list(thresholds if thresholds is not None else np.round(np.arange(0.20, 1.01, 0.04), 2))
    recs = evaluation_set("tune", profile)
    analyzer = build_analyzer(choose_embedding(embedding))
    rows = sweep(analyzer, recs, record_windows(analyzer, recs, step), thresholds, [latency])
    best = min(rows, key=lambda r: r["der_strict"])
    if len(thresholds) > 2 and best["threshold"] in (min(thresholds), max(thresholds)):
        raise ValueError(f"the best threshold, {best['threshold']}, is at the edge of the grid "
                         f"{min(thresholds)}-{max(thresholds)}: widen the grid")
    return {"threshold": float(best["threshold"]), "step": step, "latency": latency,
            "strict_der_on_tune_split": round(float(best["der_strict"]), 4), "grid": thresholds,
            "files": len(recs), "profile": profile}


def write_online(embedding: str, tuned: dict, config=None) -> None:
    """Freeze the tuned online settings into configs/reference.yaml (other keys untouched)."""
    path = Path(config or CONFIG)
    cfg = yaml.safe_load(path.read_text())
    cfg[embedding]["online"] = {"threshold": tuned["threshold"], "step": tuned["step"], "latency": tuned["latency"],
                                "tuned": {"strict_der_on_tune_split": tuned["strict_der_on_tune_split"],
                                          "files": tuned["files"], "profile": tuned["profile"],
                                          "date": datetime.date.today().isoformat()}}
    write_config(cfg, path)


# ---- telephone-band input: optimized's clustering through a phone line (chapter 90) ----------

TELEPHONE_GRID = {"threshold": [0.4, 0.5, 0.6, 0.7, 0.8], "min_cluster_size": [2, 3, 5, 8, 12]}


def through_phone(recordings: list) -> list:
    """Each recording as a phone line delivers it (``core.meetings.telephone_copy``), except those
    already telephone-band (the splits' telephone meetings), kept as they are."""
    from ..core.meetings import is_telephone, telephone_copy

    return [r if is_telephone(r) else telephone_copy(r) for r in recordings]


def eight_khz_copy(rec):
    """The recording as a plain 8 kHz recording delivers it once resampled to 16 kHz (no telephone
    channel: no 300-3400 Hz band-pass, no mu-law), with the same uri and reference."""
    import dataclasses

    import torchaudio

    y = torchaudio.functional.resample(torchaudio.functional.resample(rec.waveform, 16000, 8000), 8000, 16000)
    return dataclasses.replace(rec, waveform=y[:, : rec.waveform.shape[-1]].contiguous(),
                               meta=rec.meta | {"condition": f"{rec.meta.get('condition', rec.source)}, at 8 kHz"})


def _cut(below: list[float], above: list[float], what: str) -> float:
    """The geometric mean of the largest of ``below`` and the smallest of ``above``."""
    lo, hi = max(below), min(above)
    if not lo < hi:
        raise ValueError(f"the {what} shares overlap ({lo:.2e} >= {hi:.2e}): no cut separates them")
    return float(np.sqrt(lo * hi))


def tune_telephone(embedding: str = "campplus", profile: str = "full", grid: dict | None = None,
                   splits: tuple[str, ...] = ("tune", "dev"), progress: bool = True) -> dict:
    """``optimized``'s clustering values for telephone-band input, and the detector's cuts.

    Through a phone line the embeddings of different speakers move closer together, and
    ``optimized``'s values merge the speakers of most two-person calls (chapter 90). The
    threshold and minimum cluster size are grid-searched (``grid``, at ``optimized``'s step;
    strict DER; the networks run once per file, ``clustering_runs``) on the phone copies of the
    ``splits`` (tune and dev; never test). The detector (``core.audio.band_shares``,
    ``telephone_band``) has two cuts, each the geometric mean of the closest shares on either
    side (``ValueError`` when they overlap): above 4 kHz, between the phone copies and their
    wideband originals; below 200 Hz, between the phone copies and plain 8 kHz copies of the same
    originals (``eight_khz_copy``), which keep their bass: on those copies both the 16 kHz values
    and the chosen ones are scored too (``chosen.eight_khz_strict_der``), to show which serves
    plain 8 kHz speech."""
    from ..core.audio import band_shares
    from ..core.meetings import evaluation_set, is_telephone
    from ..pipelines.optimized import OPTIMIZED

    grid = grid or TELEPHONE_GRID
    wide, phone = [], []
    for split in splits:
        recs = evaluation_set(split, profile)
        wide += [r for r in recs if not is_telephone(r)]
        phone += through_phone(recs)
    narrow = [eight_khz_copy(r) for r in wide]
    shares = {name: [band_shares(r.waveform) for r in recs]
              for name, recs in (("phone", phone), ("wide", wide), ("8 kHz", narrow))}
    cuts = {"high": _cut([s["high"] for s in shares["phone"]], [s["high"] for s in shares["wide"]], "above-4-kHz"),
            "low": _cut([s["low"] for s in shares["phone"]], [s["low"] for s in shares["8 kHz"]], "below-200-Hz")}
    settings = {"configured": {}} | {f"{t:g}/{m}": {"clustering": {"threshold": t, "min_cluster_size": m}}
                                     for t in grid["threshold"] for m in grid["min_cluster_size"]}
    runs = clustering_runs(phone, settings, embedding=embedding, progress=progress, pipeline="optimized")
    best = min((k for k in runs if k != "configured"), key=lambda k: runs[k]["totals"]["der_strict"])
    clustering = {k: runs[best]["clustering"][k] for k in TUNED_CLUSTERING}
    edges = [k for k in TUNED_CLUSTERING if len(grid[k]) > 2 and clustering[k] in (min(grid[k]), max(grid[k]))]
    if edges:
        raise ValueError(f"the best {', '.join(edges)} lies at the edge of the grid {grid}: widen it")
    at_8khz = clustering_runs(narrow, {"16 kHz values": {}, "telephone values": {"clustering": clustering}},
                              embedding=embedding, progress=progress, pipeline="optimized")
    closest = {f"{band} ({name}: {'largest' if name == 'phone' else 'smallest'})":
               (max if name == "phone" else min)(s[band] for s in shares[name])
               for band, names in (("high", ("phone", "wide")), ("low", ("phone", "8 kHz"))) for name in names}
    return {"clustering": {"threshold": float(clustering["threshold"]), "min_cluster_size": int(clustering["min_cluster_size"])},
            "step": OPTIMIZED["segmentation_step"], "cuts": cuts,
            "chosen": {"splits": list(splits), "files": len(phone), "minutes": round(sum(r.duration for r in phone) / 60, 1),
                       "strict_der": round(runs[best]["totals"]["der_strict"], 4),
                       "strict_der_configured": round(runs["configured"]["totals"]["der_strict"], 4),
                       "grid": grid, "closest_shares": closest,
                       "eight_khz_strict_der": {k: round(r["totals"]["der_strict"], 4) for k, r in at_8khz.items()},
                       "profile": profile,
                       "date": datetime.date.today().isoformat()}}


def write_telephone(embedding: str, tuned: dict, config: Path = CONFIG) -> None:
    """Freeze ``tune_telephone``'s result as the block's ``telephone`` entry (other keys untouched;
    ``core.config.telephone_params`` reads it)."""
    cfg = yaml.safe_load(Path(config).read_text())
    cfg[embedding]["telephone"] = tuned
    write_config(cfg, config)


def band_runs(recordings: list, *, embedding: str = "campplus", progress: bool = True) -> dict[str, dict]:
    """The command line's ``optimized`` (ONNX Runtime, its telephone values configured) on
    ``recordings``, scored twice from one pass of its networks (pyannote's training mode keeps each
    file's segmentation and embeddings): ``"as configured"``, where each file the band detector
    finds band-limited is clustered with the telephone values (``decisions``: per file, the
    detector's share and decision), and ``"16 kHz values"``, the same pipeline with the switch off.
    Without telephone values for the model (``python -m diaropt tune --telephone`` writes them),
    both are the one run of the 16 kHz values."""
    from tqdm.auto import tqdm

    from ..core.audio import band_shares
    from ..pipelines.optimized import build_optimized_pipeline
    from .scoring import score

    pipe = build_optimized_pipeline(embedding)
    band = pipe.band_clustering
    pipe.training = True
    switches = {"as configured": band, "16 kHz values": None} if band is not None else {"as configured": None}
    hyps = {name: [] for name in switches}
    decisions = []
    for rec in tqdm(recordings, desc="optimized, with and without its telephone values", disable=not progress):
        f = rec.as_pyannote_file()
        for name, switch in switches.items():
            pipe.set_band_clustering(*(switch or (None,)))
            out = pipe(f)
            hyps[name].append(out.speaker_diarization if hasattr(out, "speaker_diarization") else out)
            if name == "as configured":
                decisions.append({"uri": rec.uri} | (pipe.band_decision or {
                    "shares": band_shares(rec.waveform), "telephone": False, "clustering": None}))
        pipe.set_band_clustering(*(band or (None,)))
    runs = {name: score(recordings, h) for name, h in hyps.items()}
    runs.setdefault("16 kHz values", runs["as configured"])
    runs["as configured"]["decisions"] = decisions
    return runs


def telephone_figures(embedding: str, recordings: list) -> dict[str, str]:
    """The telephone values ``optimized`` uses (``core.config.telephone_params``) in words, where
    they were chosen, the detector's cuts, how the values did on plain 8 kHz copies of the tune and
    dev files, which wideband files of ``recordings`` the detector calls telephone-band (false
    alarms) and how many of their telephone-band meetings it finds: chapter 90's phone-line
    section glues them."""
    from ..core.audio import band_shares, telephone_band
    from ..core.meetings import is_telephone
    from ..pipelines.optimized import OPTIMIZED

    tel = telephone_params(embedding, OPTIMIZED["segmentation_step"])
    wide = [r for r in recordings if not is_telephone(r)]
    meetings = [r for r in recordings if r not in wide]
    if tel is None:
        none = f"none configured for {embedding}"
        return {"tel_values": none, "tel_chosen_on": none, "tel_cut": "none", "tel_8khz": none,
                "wide_called": f"0 of {len(wide)}", "meetings_called": f"0 of {len(meetings)}"}
    chosen = config_block(embedding)["telephone"]["chosen"]
    called = [r.uri for r in wide if telephone_band(band_shares(r.waveform), tel["cuts"])]
    found = sum(telephone_band(band_shares(r.waveform), tel["cuts"]) for r in meetings)
    eight = chosen.get("eight_khz_strict_der", {})
    return {"tel_values": f"threshold {tel['clustering']['threshold']:g}, minimum cluster size "
                          f"{tel['clustering']['min_cluster_size']}",
            "tel_chosen_on": f"{chosen['minutes']:g} minutes in {chosen['files']} files of the "
                             f"{' and '.join(chosen['splits'])} splits",
            "tel_cut": f"below 200 Hz {tel['cuts']['low']:.1e}, above 4 kHz {tel['cuts']['high']:.1e}",
            "tel_8khz": (f"{100 * eight['telephone values']:.1f} % strict DER with the telephone values against "
                         f"{100 * eight['16 kHz values']:.1f} % with the 16 kHz values" if eight else "not measured"),
            "wide_called": f"{len(called)} of {len(wide)}" + (f" ({', '.join(called)})" if called else ""),
            "meetings_called": f"{found} of {len(meetings)}"}
