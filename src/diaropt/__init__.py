"""diaropt: measured optimization of speaker-diarization models (the book's shared package)."""

__version__ = "0.1.0"
