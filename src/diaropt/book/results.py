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


def baseline_reference(profile: str, embedding_name: str, recordings: list, name: str = "reference") -> dict:
    """The reference run chapter 00 saved in this build (``reference-<profile>.json``: per-file DER
    on the whole test split, timings on its timed files; ``measure.benchmark.reference_with_harness``),
    or with ``name="reference-harness"`` the exact harness's own run of the whole split. Later
    chapters compare against it (or against its rows for a subset,
    ``measure.benchmark.subset_result``) rather than re-running the slowest, deterministic
    pipeline of the book on the same files. Raises ``FileNotFoundError`` naming the chapter to
    run when the file is missing, and ``ValueError`` when it was made from other files or with
    another embedding model."""
    path = results_dir() / f"{name}-{profile}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the baseline chapter first "
                                f"(make chapter SLUG=baseline PROFILE={profile})")
    ref = load_json(path)
    uris = {f["uri"] for f in ref["files"]}
    missing = [r.uri for r in recordings if r.uri not in uris]
    if missing:
        raise ValueError(f"{path} did not score {missing[:3]}: re-run the baseline chapter")
    if ref["models"].get("embedding_name") != embedding_name:
        raise ValueError(f"{path} used the embedding {ref['models'].get('embedding_name')!r}, not {embedding_name!r}: "
                         "re-run the baseline chapter with the same embedding")
    return ref
