"""The frozen pipeline settings in ``configs/reference.yaml``, one block per embedding model.

Each block holds pyannote's ``segmentation`` and ``clustering`` hyper-parameters (3.1's recipe;
the clustering threshold re-tuned on the tune split for CAM++) and, where tuned, the streaming
diarizer's ``online`` settings. Tuning code writes the file through ``write_config``.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .constants import REPO_ROOT
from .errors import DiaroptError

CONFIG = REPO_ROOT / "configs" / "reference.yaml"


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


def online_params(embedding: str, config: Path | None = None) -> dict:
    """Frozen online settings (threshold, step, latency) of the streaming diarizer."""
    block = config_block(embedding, config or CONFIG)
    if "online" not in block:
        raise ConfigError(f"configs/reference.yaml has no online block for {embedding}; "
                          f"run `python -m diaropt tune --online --embedding {embedding}`")
    return dict(block["online"])


def write_config(cfg: dict, config: Path = CONFIG) -> None:
    """Rewrite the committed config, keeping its comment header."""
    header = "".join(line for line in Path(config).read_text().splitlines(keepends=True) if line.startswith("#"))
    Path(config).write_text(header + yaml.safe_dump(cfg, sort_keys=False))
