"""The frozen pipeline settings in ``configs/reference.yaml``, one block per embedding model.

Each block holds pyannote's ``segmentation`` and ``clustering`` hyper-parameters (3.1's recipe;
the clustering threshold re-tuned on the tune split for CAM++) and the streaming diarizer's
``online`` settings. An ``online`` block whose ``tuned`` is null was not tuned for its model
(ResNet34's carries CAM++'s values over: no real ResNet34 weights were at hand to tune with);
``online_params`` warns about it and ``online_provenance`` says it in words a chapter can show.
Tuning code writes the file through ``write_config``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import yaml

from .constants import REPO_ROOT
from .errors import DiaroptError

log = logging.getLogger(__name__)

CONFIG = REPO_ROOT / "configs" / "reference.yaml"
REFERENCE_STEP = 0.1  # pyannote 3.1's segmentation step, as a fraction of the 10 s window


class ConfigError(DiaroptError):
    """The frozen configuration has no block for what was asked."""


def config_block(embedding: str, config: Path = CONFIG) -> dict:
    """The whole block of an embedding model (``campplus`` or ``resnet34``)."""
    cfg = yaml.safe_load(Path(config).read_text())
    if embedding not in cfg:
        raise ConfigError(f"{config} has no block for embedding model {embedding!r}")
    return cfg[embedding]


def reference_params(embedding: str, config: Path = CONFIG) -> dict:
    """Frozen pipeline parameters for an embedding model (``campplus`` or ``resnet34``)."""
    block = config_block(embedding, config)
    return {"segmentation": dict(block["segmentation"]), "clustering": dict(block["clustering"])}


def optimized_params(embedding: str, segmentation_step: float, config: Path = CONFIG) -> dict:
    """``reference_params`` with the clustering values tuned for the ``optimized`` pipeline, when the
    block has them (``optimized.clustering``, tuned at ``optimized.step``; see ``measure.tuning``).

    ``min_cluster_size`` counts embeddings, one per (window, speaker), and windows start every
    ``segmentation_step``: the same count stands for more speech at a coarser step. At another step
    than the tuned one, the count is rescaled so that it stands for the same seconds of speech."""
    params = reference_params(embedding, config)
    # untuned: the reference's values, tuned at its 1 s step (0.1 of the window), rescaled
    tuned = config_block(embedding, config).get("optimized") or {"clustering": {}, "step": REFERENCE_STEP}
    params["clustering"] = rescaled(params["clustering"] | tuned["clustering"], tuned["step"], segmentation_step)
    return params


def telephone_params(embedding: str, segmentation_step: float, config: Path = CONFIG) -> dict | None:
    """``optimized``'s clustering values for band-limited input and the detector's cut, when the
    block has them (``telephone``: ``measure.tuning.tune_telephone``, chosen on phone copies of the
    tune and dev splits): ``{"clustering": {threshold, min_cluster_size rescaled to the step},
    "cuts": {"low": ..., "high": ...}}`` (``core.audio.telephone_band``); ``None`` otherwise."""
    tel = config_block(embedding, config).get("telephone")
    if not tel:
        return None
    return {"clustering": rescaled(dict(tel["clustering"]), tel["step"], segmentation_step),
            "cuts": {k: float(v) for k, v in tel["cuts"].items()}}


def rescaled(clustering: dict, from_step: float, to_step: float) -> dict:
    """Clustering values with ``min_cluster_size`` (a count of embeddings, one per window and
    speaker) moved from one segmentation step to another so that it stands for the same seconds
    of speech: rounded half up, within pyannote's range for it (1 to 20)."""
    size = clustering["min_cluster_size"] * from_step / to_step
    return clustering | {"min_cluster_size": min(20, max(1, math.floor(size + 0.5)))}


def online_params(embedding: str, config: Path | None = None) -> dict:
    """Frozen online settings of the streaming diarizer: ``threshold``, ``step``, ``latency`` and
    ``tuned`` (how they were tuned, or None when they were not tuned for this model; then
    ``carried_over_from`` names the model whose values they are, and a warning is logged)."""
    block = config_block(embedding, config or CONFIG)
    if "online" not in block:
        raise ConfigError(f"configs/reference.yaml has no online block for {embedding}; "
                          f"run `python -m diaropt tune --online --embedding {embedding}`")
    online = dict(block["online"])
    if not online.get("tuned"):
        log.warning("%s", online_provenance(embedding, online))
    return online


def online_provenance(embedding: str, online: dict) -> str:
    """One sentence on where the online settings of ``embedding`` come from (for a chapter)."""
    tuned = online.get("tuned")
    if tuned:
        return (f"the online settings for {embedding} were tuned on the tune split only "
                f"({tuned.get('files')} files, {tuned.get('profile')} profile, strict DER "
                f"{tuned.get('strict_der_on_tune_split')}, {tuned.get('date')})")
    source = online.get("carried_over_from", "another model")
    return (f"the online settings for {embedding} are NOT tuned for it: they are {source}'s tuned values "
            f"carried over (no real {embedding} weights were available to tune with); "
            f"`python -m diaropt tune --online --embedding {embedding}` tunes them")


def write_config(cfg: dict, config: Path = CONFIG) -> None:
    """Rewrite the committed config, keeping its comment header."""
    header = "".join(line for line in Path(config).read_text().splitlines(keepends=True) if line.startswith("#"))
    Path(config).write_text(header + yaml.safe_dump(cfg, sort_keys=False))
