"""Chapter 02, batching: several 10 s windows per model call, measured on a CPU.

The guide claims 2-4x from processing chunks in batches. Its ``BatchedDiarizationModel``
(``guide_batched_forward``, run as written) batches segmentation, then repeats each waveform
three times and expands the (589, 3) masks to 256 channels, so the embedding model receives
segmentation log-probabilities shaped like features and three copies of the same trunk
computation. ``BatchedDiarizationModel`` is the snippet made correct: the powerset is decoded
to binary masks (the fused decode of chapter 01), the trunk runs once per window and each
speaker's mask weights the statistics pooling; ``batched_vs_per_speaker`` proves it equal to
per-speaker calls. ``throughput_curve`` measures items per second and memory against batch
size, the sizes interleaved round by round, with each size's speed-up over batch 1 as a median
of per-round ratios (``best_ratio`` picks the best), and ``pipeline_batches`` times the
shared-trunk pipeline at batch 1 and at the best batch sizes, interleaved.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..core.constants import LOCAL_SPEAKERS, SAMPLE_RATE, SEGMENTATION_FRAMES, WINDOW_SAMPLES
from ..measure.memory import PeakRSS
from ..measure.timing import interleaved_per_call, loops_for
from ..pipelines.trunks import trunk_and_pool
from .fusion import FusedSegmentation

SETTINGS = {
    # batch_sizes: the throughput curve's x axis; repeats: interleaved rounds (every batch size, or
    # both pipeline settings, once per round); pipeline_files: test files for the in-pipeline comparison
    "full": {"batch_sizes": [1, 2, 4, 8, 16, 32], "repeats": 3, "pipeline_files": 3},
    "smoke": {"batch_sizes": [1, 4], "repeats": 3, "pipeline_files": 1},
}

GUIDE_EMBEDDING_CHANNELS = 256  # what the guide's snippet expands each frame's mask to


def tiled_windows(waveform: torch.Tensor, b: int) -> torch.Tensor:
    """``b`` real 10 s windows (B, 1, WINDOW_SAMPLES): crops of ``waveform`` (1, N) starting
    one second apart, wrapping around (tiled) when ``b`` exceeds what the recording holds."""
    x = waveform[0]
    starts = [(i * SAMPLE_RATE) % (x.shape[-1] - WINDOW_SAMPLES) for i in range(b)]
    return torch.stack([x[s: s + WINDOW_SAMPLES] for s in starts])[:, None]


class BatchedDiarizationModel(nn.Module):
    """(B, 1, WINDOW_SAMPLES) windows -> per-window speaker masks (B, 589, 3) and embeddings (B, 3, D)."""

    def __init__(self, segmentation_model, embedding_model):
        super().__init__()
        self.segmentation = FusedSegmentation(segmentation_model)
        self.embedding = embedding_model
        self._frames, self._pool = trunk_and_pool(embedding_model)

    def forward(self, audio_batch: torch.Tensor):
        masks = self.segmentation(audio_batch)  # (B, 589, 3) binary
        frames = self._frames(audio_batch)  # trunk once per window
        embeddings = self._pool(frames, masks.transpose(1, 2))  # (B, 3, D)
        return embeddings, masks


def guide_batched_forward(segmentation_model, embedding_model, audio_batch: torch.Tensor):
    """The guide's ``BatchedDiarizationModel.forward`` as written (for demonstrating its bug)."""
    batch_size = audio_batch.shape[0]
    segments = segmentation_model(audio_batch)
    waveforms = audio_batch.repeat_interleave(LOCAL_SPEAKERS, dim=0)
    masks = segments.view(-1, SEGMENTATION_FRAMES, 1).expand(-1, -1, GUIDE_EMBEDDING_CHANNELS)
    embeddings = embedding_model(waveforms, masks)
    return embeddings.view(batch_size, LOCAL_SPEAKERS, GUIDE_EMBEDDING_CHANNELS)


def guide_result(segmentation_model, embedding_model, audio_batch: torch.Tensor) -> str:
    """Run ``guide_batched_forward``: "ran, output shape ..." or the error it raises."""
    try:
        with torch.inference_mode():
            out = guide_batched_forward(segmentation_model, embedding_model, audio_batch)
        return f"ran, output shape {tuple(out.shape)}"
    except Exception as e:  # noqa: BLE001 - the failure is the measurement
        return f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"


def batched_vs_per_speaker(model: BatchedDiarizationModel, embedding_model, x: torch.Tensor):
    """``(embeddings, masks, max |error|)``: the batched model's output and its largest
    difference from one reference embedding call per local speaker with that speaker's mask."""
    with torch.inference_mode():
        emb, masks = model(x)
        ref = torch.stack([embedding_model(x, weights=masks[:, :, s]) for s in range(masks.shape[-1])], dim=1)
    return emb, masks, float((emb - ref).abs().max())


def throughput_curve(fn, make_batch, batch_sizes, *, items_per_batch=None, repeats=3, warmup=1,
                     progress=True, min_seconds: float = 0.25) -> list[dict]:
    """Seconds per call and items per second for each batch size, the sizes interleaved in every
    round (1, 2, 4, ..., then again: ``measure.timing.interleaved_per_call``) so that a load spike
    hits them all; each size's speed-up over the first size is the median of its per-round ratios
    of seconds per item, with their range and ``measure.stats``' "unstable" flag. A sample of a
    size whose call is quicker than ``min_seconds`` times as many back-to-back calls as fill it
    (as ``timeit`` does), so that a few milliseconds of jitter do not decide a ratio. Peak RSS
    growth is that of each size's first (warm-up) call."""
    import time

    from ..measure.stats import speed_ratio

    xs, growth, loops = {}, {}, {}
    with torch.inference_mode():
        for b in tqdm(batch_sizes, desc="batch sizes (first call)", disable=not progress):
            xs[b] = make_batch(b)
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                fn(xs[b])
                first = time.perf_counter() - t0
            growth[b], loops[b] = mem.delta_mib, loops_for(first, min_seconds)
        samples = interleaved_per_call([lambda b=b: fn(xs[b]) for b in batch_sizes], [loops[b] for b in batch_sizes],
                                       rounds=repeats, warmup=max(0, warmup - 1))
    items = {b: items_per_batch(b) if items_per_batch else b for b in batch_sizes}
    per_item = {b: [t / items[b] for t in ts] for b, ts in zip(batch_sizes, samples)}
    rows = []
    for b, ts in zip(batch_sizes, samples):
        ratio = speed_ratio(per_item[batch_sizes[0]], per_item[b])
        seconds = float(np.median(ts))
        rows.append({"batch": b, "seconds": seconds, "items_per_s": items[b] / seconds,
                     "speed-up vs batch 1": ratio.median, "speed-up low": ratio.low, "speed-up high": ratio.high,
                     "rounds": ratio.repeats, "unstable": ratio.unstable, "peak_rss_growth_mib": growth[b]})
    return rows


def curve_table(rows: list[dict]) -> pd.DataFrame:
    """A ``throughput_curve`` as a table indexed by batch size."""
    return pd.DataFrame(rows).set_index("batch")


def best_ratio(table: pd.DataFrame):
    """(best batch size, its speed-up over batch 1 as a ``measure.stats.Ratio``): the size with
    the highest median speed-up."""
    from ..measure.stats import Ratio

    best = int(table["speed-up vs batch 1"].idxmax())
    row = table.loc[best]
    return best, Ratio.from_columns(row, "speed-up vs batch 1")


def pipeline_batches(embedding: str, recordings: list, batches: list[tuple[int, int]], repeats: int = 3):
    """The shared-trunk-skip pipeline at each (segmentation batch, embedding chunk batch), timed
    interleaved over ``recordings`` for ``repeats`` rounds after a warm-up file each
    (``measure.benchmark.interleaved_speed``). Returns (a table: median seconds per round, RTFx
    and the speed-up over the first setting with its range; the last setting's speed-up over the
    first as a ``measure.stats.Ratio``)."""
    from ..measure.benchmark import interleaved_speed
    from ..measure.stats import speed_ratio
    from ..pipelines.reference import pipeline_variant
    from ..pipelines.trunks import build_shared_trunk_pipeline

    variants = []
    for seg_b, chunk_b in batches:
        pipe = build_shared_trunk_pipeline(embedding, skip_inactive=True, chunk_batch=chunk_b)
        pipe.segmentation_batch_size = seg_b
        variants.append(pipeline_variant(f"shared-trunk-skip, batches {seg_b}/{chunk_b}", pipe))
    speed = interleaved_speed(variants, recordings, repeats=repeats)
    first = speed["seconds"][variants[0].name]
    rows, ratio = [], None
    for (seg_b, chunk_b), v in zip(batches, variants):
        seconds = speed["seconds"][v.name]
        ratio = speed_ratio(first, seconds)
        rows.append({"segmentation batch": seg_b, "embedding chunk batch": chunk_b,
                     "seconds per round (median)": float(np.median(seconds)),
                     "RTFx": speed["audio_seconds"] / float(np.median(seconds)), "speed-up": ratio.median,
                     "speed-up low": ratio.low, "speed-up high": ratio.high, "unstable": ratio.unstable})
    return pd.DataFrame(rows), ratio
