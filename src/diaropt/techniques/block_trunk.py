"""The embedding trunk run once over the file, not once per window.

With the shared trunk (``shared_trunk``) the embedding network still runs once per 10 s window,
so with pyannote's 1 s step every second of audio goes through the trunk ten times. Here the
trunk runs on consecutive, non-overlapping 10 s blocks of the file (each second once); each
window's three masks are then pooled from the block frames that fall inside that window.

This is an approximation, not an identity: CAM++'s context-aware masking averages over its
whole input and the fbank is mean-normalised per input, so a window's frames now come from
blocks aligned to the file rather than to the window. Its DER is measured, never assumed.
"""
from __future__ import annotations

import torch

from .shared_trunk import SharedTrunkDiarization, embed_active_chunks, embedding_masks, trunk_and_pool

BLOCK_SAMPLES = 160_000  # 10 s at 16 kHz: the length the models see in the reference


def block_frames(frames_of, waveform: torch.Tensor, block: int = BLOCK_SAMPLES,
                 batch: int = 1) -> tuple[torch.Tensor, int]:
    """Trunk frames of a (1, N) waveform cut into zero-padded blocks: ((C, blocks * T), T)."""
    n = waveform.shape[-1]
    nb = max(1, -(-n // block))
    padded = torch.nn.functional.pad(waveform[0], (0, nb * block - n)).reshape(nb, 1, block)
    outs = [frames_of(padded[i: i + batch]) for i in range(0, nb, batch)]
    frames = torch.cat(outs)  # (nb, C, T)
    per_block = frames.shape[-1]
    return frames.permute(1, 0, 2).reshape(frames.shape[1], -1), per_block


def window_frames(frames: torch.Tensor, per_block: int, start: float, block_seconds: float) -> torch.Tensor:
    """The ``per_block`` trunk frames of the window starting at ``start`` seconds (zero-padded)."""
    i0 = int(round(start * per_block / block_seconds))
    out = frames[:, max(i0, 0): i0 + per_block]
    missing = per_block - out.shape[-1]
    if missing:
        out = torch.nn.functional.pad(out, (0, missing))
    return out


class BlockTrunkDiarization(SharedTrunkDiarization):
    """pyannote's pipeline whose embeddings pool per-window masks from file-level trunk frames.

    ``frames_fn(waveforms (B, 1, 160000)) -> (B, C, T)`` may replace the torch trunk (e.g. an
    ONNX Runtime session); ``pool_fn(frames, masks) -> (B, S, D)`` the pooling."""

    pool_batch: int = 64

    def set_trunk(self, frames_fn=None, pool_fn=None) -> None:
        reps = self.__dict__.setdefault("_replacements", {})
        reps["frames"], reps["pool"] = frames_fn, pool_fn

    def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
        masks = embedding_masks(self, binary_segmentations, exclude_overlap)
        frames_of, pool = trunk_and_pool(self._embedding.model_)
        reps = self.__dict__.get("_replacements", {})
        frames_of, pool = reps.get("frames") or frames_of, reps.get("pool") or pool
        waveform, sample_rate = self._audio(file)
        block_seconds = BLOCK_SAMPLES / sample_rate
        window = binary_segmentations.sliding_window
        with torch.inference_mode():
            frames, per_block = block_frames(frames_of, waveform, batch=self.chunk_batch)

            def embed(idx):
                f = torch.stack([window_frames(frames, per_block, window[c].start, block_seconds) for c in idx])
                return pool(f, torch.from_numpy(masks[idx]))

            return embed_active_chunks(masks, self._embedding.dimension, self.skip_inactive, self.pool_batch,
                                       embed, hook)
