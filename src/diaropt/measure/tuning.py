"""Tuning on the tune split only: the reference's clustering threshold and the streaming
diarizer's new-speaker threshold, frozen into ``configs/reference.yaml``.

speaker-diarization-3.1's threshold was tuned on WeSpeaker ResNet34 cosine distances; CAM++
distances live on another scale, so the threshold is re-tuned with pyannote.pipeline's
``Optimizer`` (optuna TPE, seeded) on the *tune* split only, minimising strict DER (collar 0,
overlap scored). Everything else keeps 3.1's values. Segmentations and embeddings are computed
once per file (pyannote caches them in training mode); each trial only re-clusters.

The streaming threshold is grid-searched by replaying recorded window analyses
(``techniques.streaming.sweep``): the networks run once per file.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import yaml

from ..core.config import CONFIG, reference_params, write_config
from ..core.data import benchmark_set
from ..core.models import choose_embedding, load_segmentation
from ..pipelines.reference import build_reference_pipeline


def tune_threshold(embedding: str = "campplus", n_iterations: int = 40, profile: str = "full",
                   seed: int = 0, config: Path = CONFIG) -> dict:
    from pyannote.pipeline import Optimizer

    start = reference_params("resnet34", config)  # the published 3.1 values
    pipe = build_reference_pipeline(embedding, params=start)
    pipe.legacy = True  # the optimizer scores Annotations
    frozen = {"segmentation": start["segmentation"],
              "clustering": {k: v for k, v in start["clustering"].items() if k != "threshold"}}
    pipe.freeze(frozen)
    files = [r.as_pyannote_file() for r in benchmark_set("tune", profile)]
    optimizer = Optimizer(pipe, sampler="TPESampler", seed=seed)
    warm = {"clustering": {"threshold": start["clustering"]["threshold"]}}
    result = optimizer.tune(files, n_iterations=n_iterations, warm_start=warm)
    threshold = float(result["params"]["clustering"]["threshold"])
    return {"threshold": threshold, "loss": float(result["loss"]), "n_iterations": n_iterations,
            "files": [f["uri"] for f in files], "profile": profile, "seed": seed}


def write_tuned(embedding: str, tuned: dict, config: Path = CONFIG) -> None:
    """Freeze the tuned threshold into the committed config (other blocks untouched)."""
    cfg = yaml.safe_load(Path(config).read_text())
    block = cfg[embedding]
    block["clustering"]["threshold"] = tuned["threshold"]
    block["tuned"] = {"strict_der_on_tune_split": round(tuned["loss"], 4), "n_iterations": tuned["n_iterations"],
                      "profile": tuned["profile"], "seed": tuned["seed"], "files": len(tuned["files"]),
                      "date": datetime.date.today().isoformat()}
    write_config(cfg, config)


def tune_online_threshold(embedding: str = "campplus", step: float = 1.0, latency: float = 5.0,
                          profile: str = "full", thresholds=None) -> dict:
    """Grid-search the new-speaker threshold on the tune split (strict DER), by replay."""
    from ..pipelines.streaming import WindowAnalyzer
    from ..techniques.streaming import record_windows, sweep

    thresholds = list(thresholds if thresholds is not None else np.round(np.arange(0.20, 0.72, 0.04), 2))
    recs = benchmark_set("tune", profile)
    analyzer = WindowAnalyzer(load_segmentation(), choose_embedding(embedding).model)
    rows = sweep(analyzer, recs, record_windows(analyzer, recs, step), thresholds, [latency])
    best = min(rows, key=lambda r: r["der_strict"])
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
