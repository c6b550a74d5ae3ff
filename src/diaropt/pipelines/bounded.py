"""Any length in bounded memory: the two steps of pyannote's pipeline whose memory grows with the
recording, redone so that ``optimized`` diarizes a 4-hour file in about the memory of a
10-minute one (the long-recordings chapter measures it).

Where the memory went, measured on a 4-hour meeting with ``diarize --variant optimized``
(peak 3.9 GiB before this module):

- **the decoded waveform** (0.92 GB of float32 for 4 hours): pyannote's ``Inference`` takes the
  whole waveform and ``unfold``\\ s it into windows. ``slide_segmentation`` reads one batch of
  windows at a time from a ``core.audio.FileSource`` instead, and the block trunk
  (``trunks.BlockFrames``) reads its 10 s blocks from the same source: the file stays on disk.
- **reconstruction**: pyannote's ``reconstruct`` fills a float64 array of (windows, frames per
  window, speakers) — 1.14 GB at 4 hours and 42 clusters — built as ``np.nan * np.zeros(...)``,
  so two such arrays exist while it is made; the pipeline does this twice, one call after the
  other (with and without overlap). ``reconstruct`` here adds each window's clustered activity
  straight into the (frames, speakers) sum that ``Inference.aggregate`` would have produced, then
  picks each frame's top speakers in blocks of frames.

Both are identities, not approximations, and tested as such: the same windows go through the
same model in the same batches, and the sums are of 0/1 activities (exact in float32, which is
the dtype pyannote aggregates in), so the top-speaker choice sees the same numbers in the same
order. What still grows with length is small: per-window segmentation (40 MB at 4 hours),
embeddings, the clustering's memory-saving linkage (``pipelines.clustering``), and the
(frames, speakers) activity arrays.
"""
from __future__ import annotations

import numpy as np
import torch
from pyannote.core import SlidingWindow, SlidingWindowFeature

from ..core.audio import FileSource

TOP_BLOCK = 1 << 16  # frames per block when picking each frame's top speakers


def window_count(samples: int, window: int, step: int) -> tuple[int, bool]:
    """(complete windows, whether a zero-padded last one follows), as pyannote's ``Inference.slide``
    cuts ``samples``: a padded window when the length is not a whole number of steps past the first."""
    complete = (samples - window) // step + 1 if samples >= window else 0
    return complete, samples < window or (samples - window) % step > 0


def slide_segmentation(inference, source: FileSource, hook=None) -> SlidingWindowFeature:
    """pyannote's ``Inference.slide`` (``skip_aggregation``) on a file read one batch of windows
    at a time: the same windows, batches, last zero-padded window and hook calls."""
    window = inference.model.audio.get_num_samples(inference.duration)
    step = round(inference.step * source.sample_rate)
    n, bs = source.samples, inference.batch_size
    num_chunks, has_last = window_count(n, window, step)
    total = num_chunks + has_last
    if hook is not None:
        hook(completed=0, total=total)
    outputs = []
    for c in range(0, num_chunks, bs):
        k = min(bs, num_chunks - c)
        span = source.read(c * step, (c + k - 1) * step + window)  # (1, samples of k windows)
        outputs.append(inference.infer(span.unfold(1, window, step).permute(1, 0, 2)))
        if hook is not None:
            hook(completed=c + bs, total=total)
    if has_last:
        last = source.read(num_chunks * step, n)
        last = torch.nn.functional.pad(last, (0, window - last.shape[-1]))
        outputs.append(inference.infer(last[None]))
        if hook is not None:
            hook(completed=total, total=total)
    return SlidingWindowFeature(np.vstack(outputs), SlidingWindow(start=0.0, duration=inference.duration,
                                                                  step=inference.step))


def reconstruct(segmentations: SlidingWindowFeature, hard_clusters: np.ndarray,
                count: SlidingWindowFeature) -> SlidingWindowFeature:
    """pyannote's ``SpeakerDiarization.reconstruct`` (with ``to_diarization``), without the
    (windows, frames, speakers) array: each window's per-cluster activity (the max over its local
    speakers in that cluster) is added where it falls in the file's frames."""
    num_chunks, num_frames, _ = segmentations.data.shape
    num_clusters = int(np.max(hard_clusters)) + 1
    chunks = segmentations.sliding_window
    frames = SlidingWindow(start=chunks.start, duration=count.sliding_window.duration, step=count.sliding_window.step)
    total = frames.closest_frame(chunks.start + chunks.duration + (num_chunks - 1) * chunks.step
                                 + 0.5 * frames.duration) + 1
    activity = np.zeros((total, num_clusters), dtype=np.float32)  # aggregate's dtype
    for cluster, (chunk, segmentation) in zip(hard_clusters, segmentations):
        start = frames.closest_frame(chunk.start + 0.5 * frames.duration)
        for k in np.unique(cluster):
            if k == -2:  # inactive speakers' throw-away cluster
                continue
            col = np.max(segmentation[:, cluster == k], axis=1).astype(np.float64)
            activity[start: start + num_frames, k] += np.nan_to_num(col, nan=0.0)
    max_per_frame = int(np.max(count.data))
    if num_clusters < max_per_frame:
        activity = np.pad(activity, ((0, 0), (0, max_per_frame - num_clusters)))
    activations = SlidingWindowFeature(activity, frames)
    extent = activations.extent & count.extent
    activations = activations.crop(extent, return_data=False)
    count = count.crop(extent, return_data=False)
    data = activations.data
    binary = np.zeros_like(data)
    rank = np.arange(data.shape[1])
    n = min(len(data), len(count.data))  # pyannote zips the two
    for a in range(0, n, TOP_BLOCK):
        b = min(a + TOP_BLOCK, n)
        order = np.argsort(-data[a:b], axis=-1)
        np.put_along_axis(binary[a:b], order, (rank[None, :] < count.data[a:b, :1]).astype(binary.dtype), axis=-1)
    return SlidingWindowFeature(binary, activations.sliding_window)
