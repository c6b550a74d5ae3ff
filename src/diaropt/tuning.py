"""Re-tune the reference pipeline's clustering threshold for an embedding model.

speaker-diarization-3.1's threshold was tuned on WeSpeaker ResNet34 cosine distances; CAM++
distances live on another scale, so the threshold is re-tuned with pyannote.pipeline's
``Optimizer`` (optuna TPE, seeded) on the *tune* split only, minimising strict DER (collar 0,
overlap scored). Everything else keeps 3.1's values. Segmentations and embeddings are computed
once per file (pyannote caches them in training mode); each trial only re-clusters.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import yaml

from .data import benchmark_set
from .pipeline import CONFIG, build_reference_pipeline, reference_params


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
    result = optimizer.tune(files, n_iterations=n_iterations, warm_start={"clustering": {"threshold": start["clustering"]["threshold"]}})
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


def write_config(cfg: dict, config: Path = CONFIG) -> None:
    """Rewrite the committed config, keeping its comment header."""
    header = "".join(line for line in Path(config).read_text().splitlines(keepends=True) if line.startswith("#"))
    Path(config).write_text(header + yaml.safe_dump(cfg, sort_keys=False))
