"""Read a benchmark result for ``compare``, refusing what is not one.

``compare`` used to index into whatever JSON it was given: a missing file, a notebook's summary
or a truncated write ended in a ``KeyError`` traceback that did not say which of the two files
was wrong, and a result with an impossible speed was printed as ``0.00x`` or ``nanx``. Here the
shape that ``measure.benchmark.compare_rows`` and ``compare_warnings`` read is a JSON Schema
(checked with ``jsonschema``), and the numbers the ratios divide by must be finite and positive
(JSON as Python writes it may hold ``NaN``, which no schema keyword rejects). Every error names
the file and the field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from ..core.errors import ResultError
from ..pipelines.registry import STAGES

NUMBER = {"type": "number"}
# error rates, as fractions (0.25 = 25 %): finite and >= 0
RATES = ("der_strict", "der_fluidaudio", "missed_strict", "false_strict", "confusion_strict")
# what the speed, memory and per-minute ratios divide by: finite and > 0
POSITIVE = ("rtfx", "peak_rss_mib", "audio_seconds")

SCHEMA = {
    "type": "object",
    "required": ["variant", "models", "environment", "totals", "files"],
    "properties": {
        "variant": {"type": "string"},
        "models": {"type": "object"},
        "environment": {"type": "object", "required": ["cpu"]},
        "totals": {
            "type": "object",
            "required": [*RATES, *POSITIVE, "stage_seconds"],
            # a reference scored through its harness timed its first files only (measure.benchmark)
            "properties": {**{k: NUMBER for k in (*RATES, *POSITIVE)}, "timed_audio_seconds": NUMBER,
                           "stage_seconds": {"type": "object", "required": list(STAGES),
                                             "properties": {s: NUMBER for s in STAGES}}},
        },
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["uri", "der_strict", "der_fluidaudio"],
                      "properties": {"uri": {"type": "string"}, "der_strict": NUMBER, "der_fluidaudio": NUMBER}},
        },
    },
}


def _read(path: Path):
    if not path.exists():
        raise ResultError(f"{path}: no such file")
    if path.is_dir():
        raise ResultError(f"{path}: is a directory, not a benchmark result")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise ResultError(f"{path}: not JSON (not UTF-8 text)") from e
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except OSError as e:
        raise ResultError(f"{path}: cannot read ({e.strerror})") from e


def _impossible(result: dict) -> str | None:
    """The first impossible number, in words, or None."""
    totals = result["totals"]
    checks = [(f"totals.{k}", totals[k], "a finite number >= 0", lambda v: v >= 0) for k in RATES]
    checks += [(f"totals.{k}", totals[k], "a finite number > 0", lambda v: v > 0)
               for k in (*POSITIVE, "timed_audio_seconds") if k in totals]
    checks += [(f"totals.stage_seconds.{s}", totals["stage_seconds"][s], "a finite number >= 0", lambda v: v >= 0)
               for s in STAGES]
    checks += [(f"files[{i}].{k}", f[k], "a finite number >= 0", lambda v: v >= 0)
               for i, f in enumerate(result["files"]) for k in ("der_strict", "der_fluidaudio")]
    for where, value, rule, ok in checks:
        if not (math.isfinite(value) and ok(value)):
            return f"{where} = {value} (must be {rule})"
    if totals["stage_seconds"]["total"] <= 0:
        return f"totals.stage_seconds.total = {totals['stage_seconds']['total']} (must be > 0)"
    return None


def load_result(path) -> dict:
    """A benchmark result (``python -m diaropt benchmark``'s JSON), or ``ResultError`` naming the
    file and what is wrong with it."""
    path = Path(path)
    result = _read(path)
    error = best_match(Draft202012Validator(SCHEMA).iter_errors(result))
    if error is not None:
        where = error.json_path.removeprefix("$.").removeprefix("$") or "top level"
        raise ResultError(f"{path}: not a benchmark result ({where}: {error.message}); "
                          f"`python -m diaropt benchmark` writes one")
    problem = _impossible(result)
    if problem is not None:
        raise ResultError(f"{path}: impossible value {problem}")
    return result
