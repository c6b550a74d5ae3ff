"""Errors with messages that name the fix."""


class DiaroptError(Exception):
    """Base class for this package's errors."""


class ModelError(DiaroptError):
    """A model file is missing, corrupt, tampered with, or cannot be downloaded."""


class AudioError(DiaroptError, ValueError):
    """Audio that cannot be diarized as given (wrong rate, stereo, empty, NaN, corrupt...)."""


class DataError(DiaroptError):
    """The evaluation data is missing or does not match its manifest."""
