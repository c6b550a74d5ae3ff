"""Diarization pipelines (reference, shared and block trunk, optimized, streaming) and the
registry of named variants (``diaropt.pipelines.registry``)."""
