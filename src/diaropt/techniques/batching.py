"""Chapter 02, batching: several 10 s windows per model call, measured on a CPU.

The guide claims 2-4x from processing chunks in batches. Its ``BatchedDiarizationModel``
(``guide_batched_forward``, run as written) batches segmentation, then repeats each waveform
three times and expands the (589, 3) masks to 256 channels, so the embedding model receives
segmentation log-probabilities shaped like features and three copies of the same trunk
computation. ``BatchedDiarizationModel`` is the snippet made correct: the powerset is decoded
to binary masks (the fused decode of chapter 01), the trunk runs once per window and each
speaker's mask weights the statistics pooling; ``batched_vs_per_speaker`` proves it equal to
per-speaker calls. ``throughput_curve`` measures items per second and memory against batch
size, ``curve_table`` turns a curve into a table with the speed-up over batch 1, and
``pipeline_batches`` runs the shared-trunk pipeline at batch 1 and at the best batch sizes.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..core.constants import LOCAL_SPEAKERS, SAMPLE_RATE, SEGMENTATION_FRAMES, WINDOW_SAMPLES
from ..measure.memory import PeakRSS
from ..measure.timing import time_call
from ..pipelines.trunks import trunk_and_pool
from .fusion import FusedSegmentation

SETTINGS = {
    # batch_sizes: the throughput curve's x axis; repeats: timed calls per batch size;
    # pipeline_files: test files for the in-pipeline comparison
    "full": {"batch_sizes": [1, 2, 4, 8, 16, 32], "repeats": 3, "pipeline_files": 3},
    "smoke": {"batch_sizes": [1, 4], "repeats": 1, "pipeline_files": 1},
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


def curve_table(rows: list[dict]) -> pd.DataFrame:
    """A ``throughput_curve`` as a table indexed by batch size, with the speed-up over batch 1."""
    df = pd.DataFrame(rows).set_index("batch")
    df["speed-up vs batch 1"] = df["items_per_s"] / df["items_per_s"].iloc[0]
    return df


def pipeline_batches(embedding: str, recordings: list, profile: str,
                     batches: list[tuple[int, int]]) -> pd.DataFrame:
    """The shared-trunk-skip pipeline at each (segmentation batch, embedding chunk batch), run in
    order on the same recordings: stage seconds, RTFx and DER."""
    from ..measure.benchmark import run_benchmark
    from ..pipelines.reference import pipeline_variant
    from ..pipelines.trunks import build_shared_trunk_pipeline

    rows = []
    for seg_b, chunk_b in batches:
        pipe = build_shared_trunk_pipeline(embedding, skip_inactive=True, chunk_batch=chunk_b)
        pipe.segmentation_batch_size = seg_b
        variant = pipeline_variant(f"shared-trunk-skip, batches {seg_b}/{chunk_b}", pipe)
        t = run_benchmark(variant, recordings=recordings, profile=profile)["totals"]
        rows.append({"segmentation batch": seg_b, "embedding chunk batch": chunk_b,
                     "segmentation (s)": t["stage_seconds"]["segmentation"],
                     "embedding (s)": t["stage_seconds"]["embedding"], "RTFx": t["rtfx"],
                     "DER strict (%)": 100 * t["der_strict"]})
    return pd.DataFrame(rows)
