"""Errors with messages that name the fix."""


class DiaroptError(Exception):
    """Base class for this package's errors."""


class ModelError(DiaroptError):
    """A model file is missing, corrupt, tampered with, or cannot be downloaded."""


class AudioError(DiaroptError, ValueError):
    """Audio that cannot be diarized as given (wrong rate, stereo, empty, NaN, corrupt...)."""


class DataError(DiaroptError):
    """The evaluation data is missing or does not match its manifest."""


class OptionError(DiaroptError, ValueError):
    """An option that cannot work as given: an unknown ``--param`` key, a value out of range,
    contradictory speaker counts, or a setting the chosen variant cannot honour."""


class PathError(DiaroptError):
    """An input or output path that cannot be used: missing, a directory, not writable, or an
    output that would overwrite the input."""


class ResultError(DiaroptError):
    """A file that is not a usable benchmark result (missing, not JSON, wrong shape, impossible values)."""
