"""Results as JSON under the build directory, and glue for the book's prose.

Every measured number that the prose quotes goes through ``glue`` (myst-nb), and every result
table is also written to ``results_dir()/<name>.json`` so the summary page and the CLI's
``compare`` read the same figures.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..core.constants import REPO_ROOT


def results_dir() -> Path:
    """``$DIAROPT_RESULTS`` or ``_build/results`` in the repository."""
    path = Path(os.environ.get("DIAROPT_RESULTS", REPO_ROOT / "_build" / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def save_json(obj, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=_default, allow_nan=True))
    return path


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())


def save_result(name: str, obj) -> Path:
    return save_json(obj, results_dir() / f"{name}.json")


def fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def glue(name: str, value, spec: str = ".2f", display: bool = False) -> None:
    """Glue a formatted number under ``name`` (``{glue:text}`name``` in prose).

    Returns None, so a cell that ends with a glue call shows no stray output."""
    from myst_nb import glue as _glue

    if isinstance(value, (int, float, np.floating, np.integer)):
        value = fmt(float(value), spec)
    _glue(name, value, display=display)
