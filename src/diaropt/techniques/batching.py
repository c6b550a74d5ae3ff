"""Chapter 02, batching.

``BatchedDiarizationModel`` is the guide's snippet made correct: the guide repeats each waveform
three times and expands the (589, 3) masks to 256 channels, so the embedding model receives
masks shaped like features and three copies of the same trunk computation. Here the trunk runs
once per window and each speaker's mask weights the statistics pooling.
``throughput_curve`` measures items per second and memory against batch size.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..measure.memory import PeakRSS
from ..measure.timing import time_call
from ..pipelines.trunks import trunk_and_pool
from .fusion import FusedSegmentation


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
    waveforms = audio_batch.repeat_interleave(3, dim=0)
    masks = segments.view(-1, 589, 1).expand(-1, -1, 256)
    embeddings = embedding_model(waveforms, masks)
    return embeddings.view(batch_size, 3, 256)


def throughput_curve(fn, make_batch, batch_sizes, *, items_per_batch=None, repeats=3, warmup=1,
                     progress=True) -> list[dict]:
    """Median seconds per call and items per second for each batch size, plus peak RSS growth."""
    rows = []
    for b in tqdm(batch_sizes, desc="batch sizes", disable=not progress):
        x = make_batch(b)
        with torch.inference_mode():
            with PeakRSS() as mem:
                t = time_call(lambda x=x: fn(x), warmup=warmup, repeats=repeats)
        n = items_per_batch(b) if items_per_batch else b
        rows.append({"batch": b, "seconds": t.median, "iqr": t.iqr, "items_per_s": n / t.median,
                     "peak_rss_growth_mib": mem.delta_mib})
    return rows
