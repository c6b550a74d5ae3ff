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

The chapter measures: the guide's cache answering a switched model with the old model's
output (``stale_answers``); what the correct cache buys on realistic workloads — a cold run,
a re-run, re-clustering at several thresholds, a recording that grew, a new process reading
the disk tier — against the uncached pipeline, the two timed in turn round by round
(``workloads``; each speed-up the median of its per-round ratios, with their range);
and what an hour of audio costs in memory (``entry_sizes``).
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..core.constants import SEGMENTATION_FRAMES, WINDOW_SAMPLES, WINDOW_SECONDS
from ..core.data import Recording
from ..core.models import load_segmentation
from ..measure.scoring import score
from ..measure.stats import Ratio, speed_ratio
from ..pipelines.optimized import OPTIMIZED
from ..pipelines.reference import run_pyannote
from ..pipelines.trunks import BlockTrunkDiarization, build_shared_trunk_pipeline, trunk_and_pool
from ..portable.onnx import ort_segmentation, ort_trunk
from ..portable.plain import CAMPPlusModule


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
    seg_model = load_segmentation()
    seg_id = f"segmentation-3.0/{model_fingerprint(seg_model)}/onnxruntime"
    seg = CachedModel(ort_segmentation(seg_model), cache, seg_id)
    pipe = build_shared_trunk_pipeline(embedding, chunk_batch=1, params=params, segmentation_step=segmentation_step,
                                       segmentation_batch_size=OPTIMIZED["segmentation_batch_size"],
                                       segmentation_forward=seg, cls=BlockTrunkDiarization)
    model = pipe._embedding.model_
    if hasattr(model, "campplus"):  # the optimized pipeline runs the CAM++ trunk in ONNX Runtime
        trunk_id = f"campplus-trunk/{model_fingerprint(model)}/onnxruntime"
        frames_fn = ort_trunk(model)
    else:  # and any other trunk (WeSpeaker ResNet34) in torch, as the optimized pipeline does
        frames_fn = trunk_and_pool(model)[0]
        trunk_id = f"{type(model).__name__}-trunk/{model_fingerprint(model)}/torch"
    pipe.set_trunk(frames_fn=CachedModel(frames_fn, cache, trunk_id))
    return pipe


# ---- the chapter's measurements -----------------------------------------------------------

SETTINGS = {
    # rounds: interleaved (uncached, cached) rounds of each workload (re-clustering: one per threshold)
    "full": {"files": 6, "stale_windows": 24, "rounds": 3},
    "smoke": {"files": 1, "stale_windows": 24, "rounds": 3},
}
WINDOW_STEP = 5.0  # seconds between the real windows of the stale-answer check
THRESHOLD_OFFSETS = (-0.1, -0.05, 0.0, 0.05, 0.1)  # re-clustering: around the frozen threshold
POWERSET_CLASSES = 7  # segmentation-3.0's output classes per frame
COLD, RERUN, RECLUSTER = "cold", "re-run", "re-cluster (5 thresholds)"
GROWN, DISK = "grown recording", "new process, disk tier"
GLUE_KEYS = {"rerun": RERUN, "recluster": RECLUSTER, "grown": GROWN, "cold": COLD, "disk": DISK}


def stale_answers(fp32, int8, windows: torch.Tensor) -> tuple[list[dict], int]:
    """Cache every window's fp32 segmentation, then ask again for the int8 model (an app after a
    model update): the guide's cache (keyed on the audio bytes) against the content-addressed
    one (model fingerprint in the key). Returns (one row per cache: distance of its answer to the
    int8 model's own output, frames decoded to another class), number of frames compared."""
    with torch.inference_mode():
        out32, out8 = fp32(windows), int8(windows)
    guide = GuideResultCache()
    for w, o in zip(windows, out32):
        guide.cache_segmentation(o, w.numpy().tobytes())
    guide_answer = torch.stack([guide.get_cached_segmentation(w.numpy().tobytes()) for w in windows])
    ours = ContentCache()
    CachedModel(fp32, ours)(windows)
    our_answer = CachedModel(int8, ours)(windows)

    def row(cache, answer_kind, answer):
        return {"cache": cache, "answer for the int8 model": answer_kind,
                "max |answer - int8 output|": float((answer - out8).abs().max()),
                "frames decoded to another class": int((answer.argmax(-1) != out8.argmax(-1)).sum())}

    rows = [row("guide's ResultCache", "the fp32 output (stale)", guide_answer),
            row("content-addressed (model fingerprint in key)", "recomputed", our_answer)]
    return rows, out8.shape[0] * out8.shape[1]


def run_all(pipe, recs: list[Recording]) -> tuple[float, float]:
    """(wall seconds, strict DER) of diarizing ``recs`` with ``pipe``; the DER (``measure.scoring``)
    covers the recordings with a reference (NaN if none) and its scoring is inside the timing."""
    t0 = time.perf_counter()
    hyps = [run_pyannote(pipe, rec)[0] for rec in recs]
    scored = [(rec, hyp) for rec, hyp in zip(recs, hyps) if rec.reference is not None]
    der = score([r for r, _ in scored], [h for _, h in scored])["totals"]["der_strict"]
    return time.perf_counter() - t0, der


def halves(recs: list[Recording]) -> list[Recording]:
    """The first half of each recording (no reference): a recording before it grew."""
    out = []
    for r in recs:
        n = r.waveform.shape[-1] // 2
        out.append(Recording(r.uri + "-first-half", r.waveform[:, :n], None, None, r.source, r.split))
    return out


def thresholds_around(params: dict, offsets=THRESHOLD_OFFSETS) -> list[float]:
    """Clustering thresholds around the frozen one (a user moving a slider, or tuning)."""
    return [params["clustering"]["threshold"] + d for d in offsets]


def set_threshold(pipe, params: dict, threshold: float) -> None:
    """Re-instantiate ``pipe`` with ``params`` and another clustering threshold."""
    pipe.instantiate({"segmentation": dict(params["segmentation"]),
                      "clustering": dict(params["clustering"], threshold=threshold)})


@dataclass
class Workloads:
    """The runs of every workload: one row per workload, the memory tier after the cold run, and
    the strict DER of the re-clustering runs by threshold."""

    rows: list[dict]
    memory_after_cold: int
    der_by_threshold: dict = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).set_index("workload")

    def ratio(self, workload: str) -> Ratio:
        """A workload's speed-up (uncached / cached seconds) as a ``measure.stats.Ratio``."""
        row = self.table.loc[workload]
        return Ratio.from_columns(row)


def workloads(plain, pipe, cache: ContentCache, files: list[Recording], params: dict, thresholds: list[float],
              warmup: Recording, rounds: int = 3) -> Workloads:
    """Every workload, the uncached pipeline ``plain`` and the cached ``pipe`` timed in turn
    (uncached, cached, uncached, cached, ...) so that a load spike hits both: cold (the cache
    cleared before each cached run), re-run, re-cluster (one pair per threshold), grown recording
    (from an empty memory tier and disk), new process (memory tier emptied, disk tier kept), each
    ``rounds`` times after a warm-up of both on ``warmup`` (a file outside ``files``). Each row:
    median seconds of both, the speed-up (median of the per-round ratios, with their range and
    ``measure.stats``' unstable flag), the hit rate of its cached lookups and the memory tier's
    size. Without a cache a new process costs a cold run."""
    run_pyannote(plain, warmup)
    run_pyannote(pipe, warmup)
    result = Workloads([], 0)

    def measure(name, pairs):
        """``pairs``: one (uncached run, cached run, before-cached-run) triple of callables per round."""
        hits = misses = 0
        seconds = ([], [])
        for uncached_run, cached_run, reset in pairs:
            seconds[0].append(uncached_run())
            reset()  # may reset the statistics too
            before = (cache.stats.hits, cache.stats.misses)
            seconds[1].append(cached_run())
            hits, misses = hits + cache.stats.hits - before[0], misses + cache.stats.misses - before[1]
        ratio = speed_ratio(*seconds)
        result.rows.append({"workload": name, "uncached (s)": float(np.median(seconds[0])),
                            "cached (s)": float(np.median(seconds[1])), "speed-up": ratio.median,
                            "speed-up low": ratio.low, "speed-up high": ratio.high, "rounds": ratio.repeats,
                            "unstable": ratio.unstable, "hit rate": hits / max(hits + misses, 1),
                            "cache in memory (MiB)": cache.memory_bytes / 2**20})

    def run(p, recs=files):
        return lambda: run_all(p, recs)[0]

    def nothing():
        pass

    def grown(p):
        return lambda: run_all(p, halves(files))[0] + run_all(p, files)[0]

    def at(thr):
        def cached_run():
            seconds, result.der_by_threshold[thr] = run_all(pipe, files)
            return seconds

        def uncached_run():
            set_threshold(plain, params, thr)
            set_threshold(pipe, params, thr)
            return run_all(plain, files)[0]
        return uncached_run, cached_run, nothing

    measure(COLD, [(run(plain), run(pipe), cache.clear)] * rounds)
    result.memory_after_cold = cache.memory_bytes
    measure(RERUN, [(run(plain), run(pipe), nothing)] * rounds)
    measure(RECLUSTER, [at(thr) for thr in thresholds])
    for p in (plain, pipe):
        set_threshold(p, params, params["clustering"]["threshold"])
    measure(GROWN, [(grown(plain), grown(pipe), cache.clear)] * rounds)  # from an empty memory tier and disk
    measure(DISK, [(run(plain), run(pipe), cache.memory.clear)] * rounds)  # a new process: memory empty, disk kept
    return result


def trunk_frames_shape(model) -> tuple[int, ...]:
    """Shape of the trunk frames of one 10 s block: what the cache stores per block (CAM++: the
    ``frames`` of ``CAMPPlusModule`` with the convolutional fbank, as the optimized pipeline)."""
    x = torch.zeros(1, 1, WINDOW_SAMPLES)
    with torch.inference_mode():
        if hasattr(model, "campplus"):
            return tuple(CAMPPlusModule(model, front="conv", output="frames")(x).shape)
        return tuple(trunk_and_pool(model)[0](x).shape)


def entry_sizes(model, segmentation_step: float = OPTIMIZED["segmentation_step"]) -> pd.DataFrame:
    """Bytes per cache entry and MiB per hour of audio: one segmentation window per step, one
    trunk block per 10 s."""
    seg_bytes = SEGMENTATION_FRAMES * POWERSET_CLASSES * 4
    windows_per_hour = 3600 / (WINDOW_SECONDS * segmentation_step)
    shape = trunk_frames_shape(model)
    trunk_bytes = int(np.prod(shape[1:])) * 4
    blocks_per_hour = 3600 / WINDOW_SECONDS
    return pd.DataFrame([
        {"entry": f"segmentation window ({SEGMENTATION_FRAMES} x {POWERSET_CLASSES} float32)", "bytes": seg_bytes,
         "entries per hour of audio": windows_per_hour, "MiB per hour": seg_bytes * windows_per_hour / 2**20},
        {"entry": f"embedding-trunk block ({' x '.join(map(str, shape[1:]))} float32)", "bytes": trunk_bytes,
         "entries per hour of audio": blocks_per_hour, "MiB per hour": trunk_bytes * blocks_per_hour / 2**20},
    ])
