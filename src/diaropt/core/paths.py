"""Input and output paths of the command line, checked before any model is loaded.

A diarization or a benchmark runs for seconds to hours; an output that cannot be written used to
surface only at the end, as a traceback, with the work lost. So the paths are checked first:
the input exists and is a file; the output is not a directory, not the input audio itself, and
can be written where it is (for a new file: a file can be created in its directory, tried with a
nameless temporary file, which also catches read-only file systems and ACLs that permission
bits do not show). Nothing is created or truncated by the checks, and the command opens the
output only when its whole content is ready, so a run that fails leaves an existing file as it was.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import PathError


def check_input(path) -> Path:
    """An existing, readable file, or ``PathError``."""
    p = Path(path)
    if not p.exists():
        raise PathError(f"{p}: no such file")
    if p.is_dir():
        raise PathError(f"{p}: is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise PathError(f"{p}: not readable (permission denied)")
    return p


def _can_create_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output(path, *, source=None, make_parents: bool = False) -> Path:
    """A path the output can be written to, or ``PathError``: not a directory, not ``source``
    (the input file), in an existing directory (or, with ``make_parents``, under a writable one)."""
    p = Path(path)
    if p.is_dir():
        raise PathError(f"--output {p}: is a directory; give a file name inside it")
    if source is not None and (p.resolve() == Path(source).resolve()
                               or (p.exists() and os.path.samefile(p, source))):
        raise PathError(f"--output {p}: is the input file; writing there would overwrite the audio")
    folder = _nearest_existing(p.parent) if make_parents else p.parent
    if not folder.exists():
        raise PathError(f"--output {p}: directory {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise PathError(f"--output {p}: {folder} is not a directory")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise PathError(f"--output {p}: the existing file is not writable (permission denied)")
    elif not _can_create_in(folder):
        raise PathError(f"--output {p}: cannot create files in {folder} (permission denied or read-only)")
    return p


def check_output_dir(folder) -> Path:
    """A directory the outputs of several inputs can be written to (created later if missing), or
    ``PathError``: not an existing file, and files can be created in it or in its nearest existing
    parent."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PathError(f"--output {folder}: several inputs need an output directory, and this is a file")
    base = folder if folder.exists() else _nearest_existing(folder)
    if not base.is_dir() or not _can_create_in(base):
        raise PathError(f"--output {folder}: cannot create files in {base} (permission denied or read-only)")
    return folder
