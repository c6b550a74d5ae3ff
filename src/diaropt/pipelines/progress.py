"""Progress of a running diarization: stage, percent and ETA, on stderr.

A 4-hour meeting keeps the reference pipeline busy for hours and even ``optimized`` for minutes;
a command that prints nothing for that long looks hung. pyannote's pipelines already report
progress through their ``hook`` argument: the segmentation inference calls it as batches of
windows complete, ``get_embeddings`` as batches of (window, speaker) pairs do (and so do this
project's trunk pipelines), each time with ``completed`` and ``total``. ``Progress`` is such a
hook: it turns those calls into one line per update (at most one every ``every`` seconds, and
always the 100 % line), with the stage's elapsed time and an ETA extrapolated from the stage's
rate so far. It writes plain lines, not a redrawn bar, so a log file or CI output stays readable.

``reporting(progress)`` makes every ``run_pyannote`` call in its ``with`` block report to it;
``python -m diaropt diarize`` uses it unless ``--quiet`` is given. Variants that do not run a
pyannote pipeline (``streaming``) have no such hook and report nothing.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar = ContextVar("diaropt_progress", default=None)


class Progress:
    """A pyannote hook that prints ``[label] stage: NN% (done/total), T s elapsed, ETA E s``."""

    def __init__(self, stream=None, every: float = 5.0, label: str = "", clock=time.perf_counter):
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.label, self.clock = every, label, clock
        self.step: str | None = None
        self.started = self.printed = 0.0

    def __call__(self, step, artifact=None, file=None, total=None, completed=None):
        if not total or completed is None:
            return  # a stage's final artifact, not progress
        now = self.clock()
        if step != self.step:
            self.step, self.started, self.printed = step, now, now
        done = min(max(completed / total, 0.0), 1.0)
        if done < 1.0 and now - self.printed < self.every:
            return
        self.printed = now
        elapsed = now - self.started
        eta = f"ETA {elapsed * (1.0 - done) / done:.0f} s" if 0.0 < done < 1.0 else ("done" if done >= 1.0 else "ETA ?")
        prefix = f"[{self.label}] " if self.label else ""
        print(f"{prefix}{step}: {100 * done:3.0f}% ({min(completed, total)}/{total}), {elapsed:.0f} s elapsed, {eta}",
              file=self.stream, flush=True)


@contextmanager
def reporting(progress):
    """Within the block, every ``run_pyannote`` call reports to ``progress`` (None: to nothing)."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)


def current():
    """The hook set by the innermost ``reporting`` block, or None."""
    return _CURRENT.get()
