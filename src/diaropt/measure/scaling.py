"""Long recordings (chapter 91): speed, peak memory and DER against the length of the recording,
each run of ``python -m diaropt diarize`` in a process of its own.

Users of pyannote.audio report 12-18 GB of memory for 4-hour files. What a user sees is the
command's process, so that is what is measured: for each length, a fresh interpreter runs the
``diarize`` command's code (``cli.main``) on a long meeting written to disk as 16-bit PCM, the
way a recorder writes it, and reports

- its **peak resident memory** (the kernel's high-water mark of that process, ``VmHWM``, read
  by the process itself at its end: ``ru_maxrss`` of a child would include what its parent held
  before ``exec``);
- the **pipeline's seconds** (what the command prints per file) and the real-time factor
  ``RTFx = audio seconds / pipeline seconds`` (steady state);
- the **start-up**: the process's wall time minus the pipeline's seconds (interpreter, imports,
  models, ONNX Runtime sessions, reading the file's header and scanning its samples, writing the
  RTTM and exiting), with the imports timed on their own;
- the **DER** of the RTTM it wrote against the meeting's reference (strict and FluidAudio-style).

The meetings come from ``core.data.long_meeting`` (adult voices of the test half, real read
speech); each is written before its runs and deleted after them. ``python -m diaropt scaling
--minutes 10 240`` reproduces any point, the 4-hour one included; ``extrapolate`` fits a line
through measured points for lengths not run, and every such figure is labelled as extrapolated.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..core.errors import DiaroptError

CHILD_MARK = "DIAROPT-SCALING "
MEMORY_TARGET_GB = 2.0  # peak memory of a diarize call at any length (issue: long recordings)
WARM_STARTUP_TARGET_S = 3.0  # a warm call's overhead around the work
MIN_MINUTES = 0.1  # shorter meetings may hold a single turn


LINE = re.compile(r"(\d+) speakers, ([0-9.]+) s for ([0-9.]+) s audio")


class MeasurementError(DiaroptError):
    """A measured ``diarize`` run failed or ran out of time (its stderr is in the message)."""


def meetings_dir() -> Path:
    """``_build/meetings`` beside the build's results: where the chapter writes its meetings
    (overwritten by each build, never left in the temporary directory)."""
    from ..book.results import results_dir

    path = results_dir().parent / "meetings"
    path.mkdir(parents=True, exist_ok=True)
    return path


def meeting_file(minutes: float, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """``<folder>/meeting-<minutes>min.wav`` (16-bit PCM) and its ``.rttm``, written afresh (a few
    seconds even for hours of audio; a file left by an older simulator is never reused)."""
    from ..core.data import long_meeting, write_recording

    return write_recording(long_meeting(minutes, seed), Path(folder), subtype="PCM_16")


def _child(argv: list[str], onnx: bool) -> None:
    """In the measured process: time the imports, run the ``diarize`` command, report."""
    t0 = time.perf_counter()
    import pyannote.audio.pipelines  # noqa: F401 - the imports a diarize call pays for, timed on their own
    import torch  # noqa: F401

    if onnx:  # only the variants that run ONNX Runtime pay for it
        import onnxruntime  # noqa: F401

    from .. import cli
    from .memory import peak_rss_mib

    imports = time.perf_counter() - t0
    status = cli.main(argv)
    print(CHILD_MARK + json.dumps({"status": status, "import_s": imports, "peak_rss_mib": peak_rss_mib()}),
          flush=True)


def run_diarize(audio: Path, variant: str = "optimized", *, reference: Path | None = None,
                params: dict | None = None, env: dict | None = None, timeout: float | None = None) -> dict:
    """One ``diarize`` call in a fresh process: wall, pipeline and start-up seconds, peak memory;
    with the DER of its RTTM when a ``reference`` RTTM is given (the RTTM is not kept)."""
    with tempfile.TemporaryDirectory(prefix="diaropt-scaling-") as tmp:
        row = _run_diarize(audio, variant, Path(tmp) / f"{Path(audio).stem}.rttm", params, env, timeout)
        row = score_rttm(row, reference) if reference is not None else row
    row.pop("rttm")
    return row


def _run_diarize(audio, variant, out: Path, params, env, timeout) -> dict:
    argv = ["diarize", str(audio), "--variant", variant, "--output", str(out), "--quiet"]
    for k, v in (params or {}).items():
        argv += ["--param", f"{k}={v}"]
    code = f"from diaropt.measure.scaling import _child; _child({argv!r}, {variant == 'optimized'!r})"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        raise MeasurementError(f"diarize {audio} ({variant}) ran past {timeout} s") from e
    wall = time.perf_counter() - t0
    report = [json.loads(line[len(CHILD_MARK):]) for line in proc.stdout.splitlines() if line.startswith(CHILD_MARK)]
    found = LINE.search(proc.stdout)
    if proc.returncode or not report or report[0]["status"] or not found:
        raise MeasurementError(f"diarize {audio} ({variant}) failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    speakers, seconds, audio_s = int(found[1]), float(found[2]), float(found[3])
    return {"variant": variant, "audio_s": audio_s, "minutes": audio_s / 60, "wall_s": wall, "pipeline_s": seconds,
            "startup_s": wall - seconds, "import_s": report[0]["import_s"], "rtfx": audio_s / seconds,
            "peak_rss_gib": report[0]["peak_rss_mib"] / 1024, "speakers": speakers, "rttm": str(out)}


def score_rttm(row: dict, reference_rttm: Path) -> dict:
    """The row with the DER of its RTTM against the reference (strict and FluidAudio-style)."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.database.util import load_rttm

    from ..core.metrics import CONVENTIONS, DERAccumulator

    ref = next(iter(load_rttm(str(reference_rttm)).values()))
    hyps = load_rttm(row["rttm"])
    hyp = next(iter(hyps.values())) if hyps else Annotation()  # no speech found: an empty RTTM
    scored = DERAccumulator().add(ref.uri, ref, hyp, Timeline([Segment(0.0, row["audio_s"])]))
    return {**row, **{f"der_{c}": scored[f"der_{c}"] for c in CONVENTIONS},
            "confusion_strict": scored["confusion_strict"], "ref_speakers": len(ref.labels())}


def run_scaling(plan: dict[str, list[float]], folder: Path, *, progress: bool = True) -> list[dict]:
    """``plan``: {variant: [minutes, ...]}; one fresh process per (variant, length), shortest first.
    Each meeting is written to ``folder`` before its runs and deleted after them."""
    rows = []
    for minutes in sorted({m for lengths in plan.values() for m in lengths}):
        wav, rttm = meeting_file(minutes, folder)
        try:
            rows += _runs_at(minutes, wav, rttm, [v for v, lengths in plan.items() if minutes in lengths], progress)
        finally:
            wav.unlink(missing_ok=True)
            rttm.unlink(missing_ok=True)
    order = list(plan)
    return sorted(rows, key=lambda r: (order.index(r["variant"]), r["minutes"]))


def _runs_at(minutes: float, wav: Path, rttm: Path, variants: list[str], progress: bool) -> list[dict]:
    rows = []
    for variant in variants:
        if progress:
            print(f"{variant}: {minutes:g} min ...", end=" ", flush=True)
        row = run_diarize(wav, variant, reference=rttm)
        rows.append(row)
        if progress:
            print(f"{row['pipeline_s']:.1f} s (RTFx {row['rtfx']:.1f}), start-up {row['startup_s']:.1f} s, "
                  f"peak {row['peak_rss_gib']:.2f} GiB, DER {100 * row['der_strict']:.1f} %", flush=True)
    return rows


def extrapolate(rows: list[dict], variant: str, minutes: float, key: str, *, steady: bool = False) -> float:
    """``key`` (``pipeline_s`` or ``peak_rss_gib``) of ``variant`` at ``minutes``, from a least-squares
    line through its measured points (at least two lengths). ``steady``: leave out the shortest
    length when three or more were measured — its peak memory is the fixed cost of the process
    still settling, and a line through it overstates the growth per minute."""
    import numpy as np

    pts = [(r["minutes"], r[key]) for r in rows if r["variant"] == variant]
    lengths = sorted({m for m, _ in pts})
    if len(lengths) < 2:
        raise ValueError(f"{variant}: need two lengths to extrapolate {key}")
    if steady and len(lengths) >= 3:
        pts = [(m, v) for m, v in pts if m > lengths[0]]
    slope, intercept = np.polyfit([m for m, _ in pts], [v for _, v in pts], 1)
    return float(slope * minutes + intercept)


def cold_models_env(folder: Path) -> dict:
    """Settings for a cold start: a model cache holding the verified weights (linked) but no
    exported ONNX files, so the first call exports them as a new user's does."""
    from ..core.models import cache_dir

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for item in cache_dir().iterdir():
        if item.name != "onnx" and not (folder / item.name).exists():
            (folder / item.name).symlink_to(item)
    return {"DIAROPT_MODELS": str(folder)}


def startup(audio: Path, variant: str = "optimized", warm_repeats: int = 3) -> list[dict]:
    """A cold call (no exported ONNX files yet) then ``warm_repeats`` warm ones, on ``audio``."""
    with tempfile.TemporaryDirectory(prefix="diaropt-cold-") as cold:
        rows = [{**run_diarize(audio, variant, env=cold_models_env(Path(cold))), "start": "cold"}]
    rows += [{**run_diarize(audio, variant), "start": "warm"} for _ in range(warm_repeats)]
    return rows


def table(rows: list[dict]):
    """One row per run: the figures a reader compares across lengths."""
    import pandas as pd

    return pd.DataFrame([{"variant": r["variant"], "minutes": round(r["minutes"], 1), "RTFx": r["rtfx"],
                          "pipeline (s)": r["pipeline_s"], "start-up (s)": r["startup_s"],
                          "peak memory (GiB)": r["peak_rss_gib"], "speakers found": r["speakers"],
                          "speakers": r.get("ref_speakers"), "DER strict (%)": 100 * r["der_strict"],
                          "DER FluidAudio-style (%)": 100 * r["der_fluidaudio"],
                          "of which confusion (%)": 100 * r["confusion_strict"]} for r in rows])


def removed_arrays(minutes: float, clusters: int, step_seconds: float) -> dict[str, float]:
    """GB that pyannote's own path would hold at ``minutes`` and ``clusters`` (computed from the
    array shapes, not measured): the decoded float32 waveform, and reconstruction's float64
    (windows, frames, clusters) array, of which ``np.nan * np.zeros(...)`` makes two at once."""
    from ..core.constants import SAMPLE_RATE, SEGMENTATION_FRAMES, WINDOW_SAMPLES
    from ..pipelines.bounded import window_count

    samples = round(60.0 * minutes * SAMPLE_RATE)
    complete, padded = window_count(samples, WINDOW_SAMPLES, round(step_seconds * SAMPLE_RATE))
    per_array = (complete + padded) * SEGMENTATION_FRAMES * clusters * 8
    return {"decoded waveform (float32)": samples * 4 / 1e9,
            "reconstruction (float64, two while built)": 2 * per_array / 1e9}


def common_length_ratio(rows: list[dict], fast: str = "optimized", slow: str = "reference") -> tuple[float, float]:
    """(minutes, RTFx of ``fast`` / RTFx of ``slow``) at the longest length both ran; NaN when none."""
    at = {v: {round(r["minutes"], 6): r["rtfx"] for r in rows if r["variant"] == v} for v in (fast, slow)}
    common = sorted(set(at[fast]) & set(at[slow]))
    if not common:
        return float("nan"), float("nan")
    return common[-1], at[fast][common[-1]] / at[slow][common[-1]]
