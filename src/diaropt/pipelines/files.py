"""Many files: ``python -m diaropt diarize a.wav b.flac recordings/ --output rttm/``.

A user with a folder of meetings wants one command, one RTTM per recording, and models loaded
once, not once per file. This module plans such a run and carries it out:

- ``plan`` expands directories into the audio files in them (the extensions libsndfile reads),
  maps each input to ``<output>/<uri>.rttm``, and checks everything that can be checked before
  any model is loaded: every input exists and its header decodes, the output directory can be
  written, and no two inputs would write the same RTTM. One input and an ``--output`` that is
  not a directory keeps the single-file form (``--output x.rttm``).
- ``run_local`` diarizes the files one after another in this process with one pipeline, whose
  compute threads use every core already; the parallel chapter (08) measures threads, processes
  and a Dask cluster against exactly this sequential run on the build's machine.
- ``run_dask`` sends the same per-file task to an existing Dask cluster (``--dask-scheduler
  ADDRESS``); each worker process builds the pipeline once and reads the audio from the path,
  so the files must be visible to the workers (a shared file system). A user who outgrows one
  machine changes one option.

A file that fails while it is diarized (silent, NaN samples, too short: problems only decoding
the whole file shows) does not stop the others: every finished RTTM is written, each failure is
reported with its reason, and the command's exit status says that something failed.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.audio import check_complete
from ..core.errors import AudioError, DiaroptError, PathError
from ..core.paths import check_input

DASK_CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler of --dask-scheduler
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf",
                            ".w64", ".rf64"})


def rttm_uri(path) -> str:
    """The RTTM file id of an audio path: its stem, whitespace replaced (RTTM is space-separated,
    and pyannote refuses to write an id with a space in it)."""
    import re

    return re.sub(r"\s+", "_", Path(path).stem) or "audio"


def clip_to_audio(hyp, duration: float):
    """The hypothesis without any turn past the end of the audio (aggregation over padded
    windows can end the last turn up to a frame later)."""
    from pyannote.core import Segment

    return hyp.crop(Segment(0.0, duration))


@dataclass
class Job:
    source: Path
    output: Path


@dataclass
class Outcome:
    """What happened to one input: its RTTM text and figures, or the reason it failed."""

    source: str
    output: str
    rttm: str = ""
    speakers: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    notes: list = field(default_factory=list)  # what was converted (resampled, downmixed)
    warnings: list = field(default_factory=list)  # what may hurt the result (clipped, very quiet)
    error: str = ""


def _expand(inputs: Iterable) -> tuple[list[Path], bool]:
    """Files named, and the audio files of directories named (sorted); whether any was a directory."""
    files, had_dir = [], False
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            had_dir = True
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise PathError(f"{p}: no audio files in this directory ({', '.join(sorted(AUDIO_SUFFIXES))})")
            files += found
        else:
            files.append(check_input(p))
    return files, had_dir


def _check_header(path: Path) -> None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"{path}: cannot decode audio ({str(e).strip() or type(e).__name__})") from e
    if info.frames == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    check_complete(path)


def plan(inputs: list, output) -> tuple[list[Job], bool]:
    """The jobs of a ``diarize`` call, checked; and whether it is the single-file form (one input
    file, ``--output`` naming the RTTM file itself)."""
    from ..core.paths import check_output, check_output_dir

    files, had_dir = _expand(inputs)
    out = Path(output)
    single = len(files) == 1 and not had_dir and not out.is_dir()
    if single:
        jobs = [Job(files[0], check_output(out, source=files[0]))]
    else:
        check_output_dir(out)
        jobs, taken = [], {}
        for f in files:
            target = out / f"{rttm_uri(f)}.rttm"
            if target in taken:
                raise PathError(f"{taken[target]} and {f} would both write {target}: rename one, or diarize them "
                                "in separate calls")
            taken[target] = f
            jobs.append(Job(f, target))
    for job in jobs:
        _check_header(job.source)
    return jobs, single


# ---- one file, wherever it runs ------------------------------------------------------------------

_CACHE = threading.local()


def build(spec: dict):
    """The pipeline variant of ``spec``, with its speaker counts."""
    from .reference import with_speaker_counts
    from .registry import get_variant

    return with_speaker_counts(get_variant(spec["variant"], embedding=spec["embedding"], **spec["params"]),
                               spec["counts"])


def _worker_variant(spec: dict):
    """A Dask worker's pipeline for ``spec``: built on its first task, reused by the next ones."""
    key = repr(sorted(spec.items()))
    if getattr(_CACHE, "key", None) != key:
        _CACHE.variant, _CACHE.key = build(spec), key
    return _CACHE.variant


def diarize_file(source, output, spec: dict, progress=None, variant=None) -> Outcome:
    """Diarize one file with ``variant`` (by default the worker's pipeline for ``spec``: ``variant``,
    ``embedding``, ``params``, ``counts``, ``downmix``); never raises for a problem of the file
    itself (``Outcome.error``)."""
    from ..core.audio import conversion_notes, load_audio, open_audio
    from ..core.data import Recording
    from .progress import reporting

    outcome = Outcome(str(source), str(output))
    try:
        variant = variant if variant is not None else _worker_variant(spec)
        # a pipeline that reads blocks leaves a 16 kHz WAV/FLAC file on disk (pipelines.bounded)
        read = open_audio if getattr(variant.pipeline, "reads_blocks", False) else load_audio
        with warnings.catch_warnings(record=True) as caught:  # clipping, very quiet audio: said, not hidden
            warnings.simplefilter("always")
            wav = read(source, resample=True, downmix=spec["downmix"])
        outcome.notes = conversion_notes(source, downmix=spec["downmix"])
        outcome.warnings = [str(w.message).replace(f"{source}: ", "") for w in caught]
        rec = Recording(rttm_uri(source), wav, None, None, "user", "")
        t0 = time.perf_counter()
        with reporting(progress):
            hyp, _ = variant.run(rec)
        outcome.seconds = time.perf_counter() - t0
        band = getattr(variant.pipeline, "band_decision", None)
        if band and band["telephone"]:
            c = band["clustering"]
            outcome.notes.append(f"telephone-band audio (shares of energy below 200 Hz {band['shares']['low']:.1e}, "
                                 f"above 4 kHz {band['shares']['high']:.1e}): "
                                 f"clustered with threshold {c['threshold']:g}, minimum cluster size "
                                 f"{c['min_cluster_size']} (chosen for band-limited speech)")
    except DiaroptError as e:
        outcome.error = str(e)
        return outcome
    hyp = clip_to_audio(hyp, rec.duration)
    outcome.rttm, outcome.speakers, outcome.audio_seconds = hyp.to_rttm(), len(hyp.labels()), rec.duration
    return outcome


def write(outcome: Outcome) -> None:
    """The RTTM of a finished file (opened only now: a failed run leaves an old file as it was)."""
    out = Path(outcome.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(outcome.rttm)


def run_local(jobs: list[Job], spec: dict, on_done: Callable[[Outcome], None], progress_for=None) -> list[Outcome]:
    """Every job in this process, one after another, with one pipeline."""
    variant, outcomes = build(spec), []
    for i, job in enumerate(jobs, 1):
        progress = progress_for(job, i, len(jobs)) if progress_for else None
        outcome = diarize_file(job.source, job.output, spec, progress, variant)
        on_done(outcome)
        outcomes.append(outcome)
    return outcomes


def run_dask(jobs: list[Job], spec: dict, address: str, on_done: Callable[[Outcome], None]) -> list[Outcome]:
    """Every job as a task on the Dask cluster at ``address``; results handled as they finish."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - dask is a dependency of this project
        raise DiaroptError(f"--dask-scheduler needs dask.distributed ({e})") from e
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise DiaroptError(f"--dask-scheduler {address}: cannot connect ({type(e).__name__}: {e})") from e
    with client:
        futures = [client.submit(diarize_file, str(j.source), str(j.output), spec, pure=False,
                                 key=f"diaropt-{i}-{os.path.basename(j.source)}") for i, j in enumerate(jobs)]
        outcomes = []
        for future in as_completed(futures):
            outcome = future.result()
            on_done(outcome)
            outcomes.append(outcome)
    order = {str(j.source): i for i, j in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order[o.source])
