"""Chapter 06, caching: a content-addressed cache for model outputs.

The guide's ``ResultCache`` keys a dictionary on the whole audio ``Data`` and, when full,
calls ``removeFirst()`` on it. A Swift ``Dictionary`` has no defined order, so "first" is an
arbitrary entry, not the least recently used one (whether the call even compiles on a
``Dictionary`` was not checked here: no Swift toolchain). A key on the whole file never hits
for a file that shares windows with another. And it ignores the model and the settings: swap
a model or change a parameter and it returns stale results.

Here the key is ``sha256(model fingerprint, parameters, audio chunk)``:

- the **model fingerprint** hashes every tensor of the state dict (names, dtypes, shapes,
  bytes), so a re-quantized or re-loaded model with other weights never hits old entries;
- the **parameters** are any JSON-serialisable settings the output depends on;
- the **audio chunk** is the exact float32 samples of one model input (a 10 s window).

Storage: a bounded LRU in memory (``cachetools.LRUCache`` sized in bytes) and an optional
on-disk tier (``diskcache.Cache``, bounded, LRU-ish eviction) that survives restarts.

In the pipeline: ``GuideResultCache`` ports the guide's Swift ``ResultCache`` to Python line by
line (Python dicts are insertion-ordered, so its ``removeFirst`` becomes FIFO here; in Swift
the order is undefined). ``cached_optimized_pipeline`` puts both networks of the ``optimized``
pipeline behind a ``ContentCache``: every 10 s segmentation window and every 10 s
embedding-trunk block is looked up by content, model fingerprint and runtime.
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.models import load_segmentation
from ..pipelines.optimized import OPTIMIZED
from ..pipelines.trunks import BlockTrunkDiarization, build_shared_trunk_pipeline
from ..portable.onnx import ort_segmentation, ort_trunk


def _state_bytes(value) -> bytes:
    if isinstance(value, torch.Tensor) and not value.is_quantized:
        t = value.detach().cpu().contiguous()
        return f"{t.dtype}{tuple(t.shape)}".encode() + (t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    # quantized tensors and packed parameters (dynamic int8 LSTM/Linear): serialized form
    buf = io.BytesIO()
    torch.save(value, buf)
    return buf.getvalue()


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the state dict: names, dtypes, shapes and bytes of every entry (packed
    int8 parameters included, through their serialized form)."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(_state_bytes(value))
    return h.hexdigest()


def cache_key(audio: torch.Tensor | np.ndarray, model_id: str, params: dict | None = None) -> str:
    """Content address of one model call: model fingerprint + settings + exact samples."""
    x = np.ascontiguousarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio,
                             dtype=np.float32)
    h = hashlib.sha256()
    h.update(model_id.encode())
    h.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    h.update(str(x.shape).encode())
    h.update(x.tobytes())
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


class ContentCache:
    """Bounded in-memory LRU (bytes) with an optional bounded on-disk tier."""

    def __init__(self, max_bytes: int = 256 << 20, directory: str | None = None, disk_bytes: int = 2 << 30):
        from cachetools import LRUCache

        self.memory = LRUCache(maxsize=max_bytes, getsizeof=lambda v: v.nbytes)
        self.disk = None
        if directory is not None:
            import diskcache

            self.disk = diskcache.Cache(str(directory), size_limit=disk_bytes, eviction_policy="least-recently-used")
        self.stats = CacheStats()

    @property
    def memory_bytes(self) -> int:
        return int(self.memory.currsize)

    def get(self, key: str) -> np.ndarray | None:
        value = self.memory.get(key)
        if value is None and self.disk is not None:
            value = self.disk.get(key)
            if value is not None:
                self.stats.disk_hits += 1
                self._remember(key, value)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        self._remember(key, value)
        if self.disk is not None:
            self.disk.set(key, value)

    def _remember(self, key: str, value: np.ndarray) -> None:
        if value.nbytes <= self.memory.maxsize:  # an item larger than the whole budget is not kept
            self.memory[key] = value

    def clear(self) -> None:
        self.memory.clear()
        if self.disk is not None:
            self.disk.clear()
        self.stats = CacheStats()


class CachedModel:
    """Call a batched model through a ``ContentCache``: each item of the batch is looked up by
    its content; only the misses are computed (in one batch) and stored.

    ``model(batch (B, ...)) -> (B, ...)``; ``params`` are the settings the output depends on."""

    def __init__(self, model, cache: ContentCache, model_id: str | None = None, params: dict | None = None):
        if model_id is None:
            if not isinstance(model, torch.nn.Module):
                raise ValueError("model_id is required for a model that is not an nn.Module")
            model_id = model_fingerprint(model)
        self.model, self.cache, self.model_id, self.params = model, cache, model_id, dict(params or {})

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        keys = [cache_key(x, self.model_id, self.params) for x in batch]
        found = [self.cache.get(k) for k in keys]
        todo = [i for i, v in enumerate(found) if v is None]
        if todo:
            out = self.model(batch[todo])
            out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
            for j, i in enumerate(todo):
                found[i] = out[j]
                self.cache.put(keys[i], out[j])
        return torch.from_numpy(np.stack(found))


# ---- the guide's cache, and the cache in the pipeline -----------------------------------------

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
                              segmentation_step: float = OPTIMIZED["segmentation_step"], params=None):
    """The ``optimized`` pipeline (ONNX Runtime, block trunk) with cached network calls."""
    folder = Path(tempfile.mkdtemp(prefix="diaropt-onnx-"))
    seg_model = load_segmentation()
    seg_id = f"segmentation-3.0/{model_fingerprint(seg_model)}/onnxruntime"
    seg = CachedModel(ort_segmentation(seg_model, folder), cache, seg_id)
    pipe = build_shared_trunk_pipeline(embedding, chunk_batch=1, params=params, segmentation_step=segmentation_step,
                                       segmentation_batch_size=OPTIMIZED["segmentation_batch_size"],
                                       segmentation_forward=seg, cls=BlockTrunkDiarization)
    model = pipe._embedding.model_
    if not hasattr(model, "campplus"):
        raise NotImplementedError("the cached trunk is wired for CAM++ only")
    trunk_id = f"campplus-trunk/{model_fingerprint(model)}/onnxruntime"
    pipe.set_trunk(frames_fn=CachedModel(ort_trunk(model, folder), cache, trunk_id))
    return pipe
