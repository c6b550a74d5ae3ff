"""Technique 6 in the pipeline: the guide's cache as written, and a correct one wired in.

``GuideResultCache`` ports the guide's Swift ``ResultCache`` to Python line by line (Python
dicts are insertion-ordered, so its ``removeFirst`` becomes FIFO here; in Swift the order is
undefined). ``cached_optimized_pipeline`` puts both networks of the ``optimized`` pipeline
behind a ``diaropt.cache.ContentCache``: every 10 s segmentation window and every 10 s
embedding-trunk block is looked up by content, model fingerprint and runtime.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..cache import CachedModel, ContentCache, model_fingerprint
from ..models import load_segmentation
from . import optimized
from .block_trunk import BlockTrunkDiarization
from .shared_trunk import build_shared_trunk_pipeline


class GuideResultCache:
    """The guide's ``ResultCache`` (segmentation part), as written: keyed on the whole audio."""

    def __init__(self, max_cache_size: int = 100):
        self.segmentation_cache: dict[bytes, object] = {}
        self.max_cache_size = max_cache_size

    def get_cached_segmentation(self, audio: bytes):
        return self.segmentation_cache.get(audio)

    def cache_segmentation(self, result, audio: bytes) -> None:
        if len(self.segmentation_cache) >= self.max_cache_size:
            self.segmentation_cache.pop(next(iter(self.segmentation_cache)))  # removeFirst()
        self.segmentation_cache[audio] = result


def cached_optimized_pipeline(cache: ContentCache, embedding="auto",
                              segmentation_step: float = optimized.OPTIMIZED["segmentation_step"], params=None):
    """The ``optimized`` pipeline (ONNX Runtime, block trunk) with cached network calls."""
    folder = Path(tempfile.mkdtemp(prefix="diaropt-onnx-"))
    seg_model = load_segmentation()
    seg_id = f"segmentation-3.0/{model_fingerprint(seg_model)}/onnxruntime"
    seg = CachedModel(optimized.ort_segmentation(seg_model, folder), cache, seg_id)
    pipe = build_shared_trunk_pipeline(embedding, chunk_batch=1, params=params, segmentation_step=segmentation_step,
                                       segmentation_batch_size=optimized.OPTIMIZED["segmentation_batch_size"],
                                       segmentation_forward=seg, cls=BlockTrunkDiarization)
    model = pipe._embedding.model_
    if not hasattr(model, "campplus"):
        raise NotImplementedError("the cached trunk is wired for CAM++ only")
    trunk_id = f"campplus-trunk/{model_fingerprint(model)}/onnxruntime"
    pipe.set_trunk(frames_fn=CachedModel(optimized.ort_trunk(model, folder), cache, trunk_id))
    return pipe
