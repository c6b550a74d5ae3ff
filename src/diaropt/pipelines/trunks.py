"""Embedding trunks shared across speakers (per window) and across windows (per 10 s block).

**Shared trunk** (the fusion and batching chapters). pyannote's reference embeds every (chunk,
local speaker) pair by running the whole embedding network on the chunk's waveform with that
speaker's frame mask; the mask only enters at the statistics pooling.
``SharedTrunkDiarization`` runs the trunk once per chunk (batched over chunks) and pools the
three masks from the same frames. Masks are built exactly as pyannote builds them (overlap-free
when enough clean frames remain). With ``skip_inactive``, speakers whose mask is all zero get
no embedding (NaN): pyannote's clustering never trains on them and their zero masks contribute
nothing to the reconstruction, so the output is unchanged.

**Block trunk** (the ``optimized`` pipeline). With the shared trunk the embedding network still
runs once per 10 s window, so with pyannote's 1 s step every second of audio goes through the
trunk ten times. ``BlockTrunkDiarization`` runs the trunk on consecutive, non-overlapping 10 s
blocks of the file (each second once); each window's three masks are then pooled from the
block frames that fall inside that window. This is an approximation, not an identity: CAM++'s
context-aware masking averages over its whole input and the fbank is mean-normalised per input,
so a window's frames now come from blocks aligned to the file rather than to the window. Its
DER is measured, never assumed.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Mapping

import numpy as np
import torch
from pyannote.audio.pipelines import SpeakerDiarization

from ..core.audio import FileSource
from ..core.constants import SAMPLE_RATE, WINDOW_SAMPLES
from . import bounded
from .reference import build_reference_pipeline, pipeline_variant, set_known_min_samples
from .registry import Variant


def trunk_and_pool(model):
    """(frames(waveforms), pool(frames, weights)) for CAM++ or WeSpeaker ResNet34.

    ``frames(waveforms (B, 1, N)) -> (B, C, T)``: the trunk's frames, time last;
    ``pool(frames (B, C, T), weights (B, S, F) or None) -> (B, S, D)``: masked statistics
    pooling and the embedding layer (pyannote's ``StatsPool`` interpolates the weights to T).
    ``pool(frames(w), m)`` equals ``model(w, weights=m)``. ResNet34's trunk outputs (B, channels,
    frequency, T); its frames are flattened to (B, channels * frequency, T), the order its own
    pooling layer flattens them in, so block and window slicing along T work as for CAM++.
    """
    if hasattr(model, "campplus"):
        return (lambda w: model.campplus.frame_features(model.compute_fbank(w)),
                model.campplus.pool_and_embed)
    if hasattr(model, "resnet"):
        freq = int(model.resnet.feat_dim / 8)  # the frequency axis after the ResNet's three stride-2 stages

        def frames_of(w):
            return model.resnet.forward_frames(model.compute_fbank(w)).flatten(1, 2)

        def pool(frames, weights):
            out = model.resnet.forward_embedding(frames.unflatten(1, (-1, freq)), weights=weights)
            return out[-1] if isinstance(out, tuple) else out
        return frames_of, pool
    raise NotImplementedError(f"no trunk/pool split known for {type(model).__name__}")


def embedding_masks(pipe: SpeakerDiarization, binary_segmentations, exclude_overlap: bool) -> np.ndarray:
    """The (chunks, speakers, frames) masks pyannote's ``get_embeddings`` would use."""
    data = np.nan_to_num(binary_segmentations.data, nan=0.0).astype(np.float32)
    num_chunks, num_frames, _ = data.shape
    if not exclude_overlap:
        return data.transpose(0, 2, 1)
    duration = binary_segmentations.sliding_window.duration
    min_num_frames = math.ceil(num_frames * pipe._embedding.min_num_samples / (duration * pipe._embedding.sample_rate))
    clean = data * (np.sum(binary_segmentations.data, axis=2, keepdims=True) < 2)
    clean = np.nan_to_num(clean, nan=0.0).astype(np.float32)
    use_clean = clean.sum(axis=1, keepdims=True) > min_num_frames  # (chunks, 1, speakers)
    return np.where(use_clean, clean, data).transpose(0, 2, 1)


def embed_active_chunks(masks: np.ndarray, dimension: int, skip_inactive: bool, batch: int, embed, hook=None):
    """(chunks, speakers, dim) embeddings from ``embed(chunk indices) -> (n, speakers, dim)``,
    called in batches; chunks with no active speaker are skipped (NaN) when ``skip_inactive``."""
    num_chunks, num_speakers, _ = masks.shape
    out = np.full((num_chunks, num_speakers, dimension), np.nan, dtype=np.float32)
    active = masks.sum(axis=2) > 0 if skip_inactive else np.ones((num_chunks, num_speakers), bool)
    todo = np.flatnonzero(active.any(axis=1))
    for start in range(0, len(todo), batch):
        idx = todo[start: start + batch]
        emb = np.asarray(embed(idx), dtype=np.float32)
        emb[~active[idx]] = np.nan
        out[idx] = emb
        if hook is not None:
            hook("embeddings", None, total=len(todo), completed=min(start + batch, len(todo)))
    return out


_VERSIONS = itertools.count()  # what made a pipeline's cached embeddings (``SharedTrunkDiarization``)


class SharedTrunkDiarization(SpeakerDiarization):
    """pyannote's pipeline with a shared-trunk ``get_embeddings``."""

    skip_inactive: bool = False
    chunk_batch: int = 8

    def set_integrated(self, fn) -> None:
        """Replace trunk + pool by ``fn(waveforms (B, 1, N), masks (B, S, F)) -> (B, S, D)``
        (e.g. a compressed ``IntegratedEmbedding`` or an ONNX Runtime session wrapper).

        Stored inside a plain dict: pyannote.audio's ``Pipeline.__setattr__`` diverts any
        ``nn.Module`` attribute into its own model registry."""
        self.__dict__.setdefault("_replacements", {})["integrated"] = fn
        self.__dict__["_version"] = next(_VERSIONS)

    def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
        # In training mode (pyannote.pipeline's Optimizer, ``measure.tuning.clustering_runs``) the
        # embeddings of a file are computed once and kept in the file's dict, as pyannote's own
        # ``get_embeddings`` does: later calls on the same dict only re-cluster. They are kept under
        # a key of this class with what produced them (a number drawn when this pipeline was built
        # and again whenever its embedding computation is replaced, skip_inactive,
        # exclude_overlap): a dict passed to another pipeline or variant computes its own.
        # Numbers, not ``id()``: a freed object's id can come back for a new one. segmentation-3.0
        # is a powerset model, so its binarisation, and hence the masks, do not depend on a threshold.
        made_by = self._made_by(exclude_overlap)
        cached = file.get(self.CACHED_EMBEDDINGS) if self.training else None
        if cached is not None and cached["made_by"] == made_by:
            return cached["embeddings"]
        embeddings = self._embeddings(file, binary_segmentations, exclude_overlap, hook)
        if self.training:
            if not self._segmentation.model.specifications.powerset:
                raise NotImplementedError("embedding cache: only powerset segmentation models (segmentation-3.0)")
            file[self.CACHED_EMBEDDINGS] = {"made_by": made_by, "embeddings": embeddings}
        return embeddings

    CACHED_EMBEDDINGS = "diaropt/shared_trunk_embeddings"

    def _made_by(self, exclude_overlap) -> tuple:
        if "_version" not in self.__dict__:
            self.__dict__["_version"] = next(_VERSIONS)
        return (self.__dict__["_version"], self.skip_inactive, bool(exclude_overlap))

    def adopt_embeddings(self, file) -> None:
        """Take the embeddings that another pipeline built the same way (same models and
        settings; ``measure.tuning`` computes files in worker threads, one pipeline each) cached
        in ``file`` as this pipeline's own. Whether the other pipeline was built the same way is
        the caller's responsibility."""
        cached = file[self.CACHED_EMBEDDINGS]
        cached["made_by"] = self._made_by(cached["made_by"][-1])

    def _embeddings(self, file, binary_segmentations, exclude_overlap, hook):
        masks = embedding_masks(self, binary_segmentations, exclude_overlap)
        integrated = self.__dict__.get("_replacements", {}).get("integrated")
        if integrated is None:
            frames_of, pool = trunk_and_pool(self._embedding.model_)

            def integrated(w, m):
                return pool(frames_of(w), m)
        window = binary_segmentations.sliding_window

        def embed(idx):
            wav = torch.stack([self._audio.crop(file, window[c], mode="pad")[0] for c in idx])
            return integrated(wav, torch.from_numpy(masks[idx]))

        with torch.inference_mode():
            return embed_active_chunks(masks, self._embedding.dimension, self.skip_inactive, self.chunk_batch,
                                       embed, hook)


def build_shared_trunk_pipeline(embedding="auto", skip_inactive=False, chunk_batch=8, params=None,
                                segmentation_forward=None, integrated=None, segmentation_step=0.1,
                                segmentation_batch_size=32, cls=None):
    """The shared-trunk pipeline; optionally with another segmentation forward (a module with
    pyannote's input/output, e.g. a compressed ``PlainSegmentation``) or embedding callable."""
    ref = build_reference_pipeline(embedding, params=params, segmentation_step=segmentation_step)
    if segmentation_forward is not None:
        seg = copy.deepcopy(ref._segmentation.model)
        seg.forward = segmentation_forward  # pyannote's Inference calls model(batch)
        ref._segmentation.model = seg
    pipe = (cls or SharedTrunkDiarization)(
        segmentation=ref._segmentation.model, embedding=ref._embedding.model_, embedding_exclude_overlap=True,
        plda=ref._plda, clustering="AgglomerativeClustering", segmentation_step=segmentation_step,
        segmentation_batch_size=segmentation_batch_size, embedding_batch_size=32)
    pipe.instantiate(ref.parameters(instantiated=True))
    pipe.skip_inactive, pipe.chunk_batch = skip_inactive, chunk_batch
    set_known_min_samples(pipe)
    if integrated is not None:
        pipe.set_integrated(integrated)
    pipe.embedding_choice = ref.embedding_choice
    return pipe


# ---- block trunk ------------------------------------------------------------------------

BLOCK_SAMPLES = WINDOW_SAMPLES  # 10 s at 16 kHz: the length the models see in the reference


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


class BlockFrames:
    """The trunk frames of a (1, N) waveform's 10 s blocks, computed when a window first needs
    them and dropped once the windows have moved past them.

    ``window(start)`` returns exactly ``window_frames(*block_frames(frames_of, waveform, block,
    batch), start, block_seconds)``: the same blocks, zero-padded at the end of the file, computed
    in the same groups of ``batch`` blocks (so the same numbers), but without holding the frames
    of the whole file. For CAM++ those are 512 channels at 100 frames per second, about 0.7 GB per
    hour of audio, and they were concatenated and permuted into two more copies: the memory of
    ``optimized`` grew by about 0.5 GiB per 20 minutes of audio. Here the live frames are those
    of the blocks the current windows touch. ``release_before(seconds)`` drops the groups that
    end before a time; windows must then come in increasing order of start (pyannote's chunks do).
    """

    def __init__(self, frames_of, waveform, block: int = BLOCK_SAMPLES, batch: int = 1,
                 sample_rate: int = 16000):
        self.frames_of, self.block, self.batch = frames_of, block, max(1, batch)
        # a (1, N) tensor, or a ``core.audio.FileSource`` read block by block (``pipelines.bounded``)
        self.read = waveform.read if isinstance(waveform, FileSource) else (lambda a, b: waveform[:, a:b])
        self.blocks = max(1, -(-waveform.shape[-1] // block))
        self.block_seconds = block / sample_rate
        self.groups: dict[int, torch.Tensor] = {}  # group index -> (batch, C, T)
        self.per_block: int | None = None
        self.computed = 0  # groups computed so far (each exactly once when windows come in order)

    def _group(self, g: int) -> torch.Tensor:
        if g not in self.groups:
            first, last = g * self.batch, min((g + 1) * self.batch, self.blocks)
            x = self.read(first * self.block, last * self.block)[0]
            x = torch.nn.functional.pad(x, (0, (last - first) * self.block - x.shape[-1]))
            self.groups[g] = self.frames_of(x.reshape(last - first, 1, self.block))
            self.computed += 1
            self.per_block = self.groups[g].shape[-1]
        return self.groups[g]

    def _block(self, b: int) -> torch.Tensor:
        return self._group(b // self.batch)[b % self.batch]

    def window(self, start: float) -> torch.Tensor:
        """The ``per_block`` frames of the window starting at ``start`` seconds (zero-padded)."""
        per_block = self.per_block or self._block(0).shape[-1]
        i0 = int(round(start * per_block / self.block_seconds))
        lo, hi = max(i0, 0), i0 + per_block
        parts = []
        for b in range(lo // per_block, min(-(-hi // per_block), self.blocks)):
            frames = self._block(b)
            parts.append(frames[:, max(lo - b * per_block, 0): min(hi - b * per_block, per_block)])
        out = torch.cat(parts, dim=-1) if parts else self._block(0)[:, :0]
        missing = per_block - out.shape[-1]
        return torch.nn.functional.pad(out, (0, missing)) if missing else out

    def release_before(self, seconds: float) -> None:
        """Forget the groups whose blocks all end at or before ``seconds``."""
        first_needed = int(seconds // self.block_seconds) // self.batch
        for g in [g for g in self.groups if g < first_needed]:
            del self.groups[g]


class BlockTrunkDiarization(SharedTrunkDiarization):
    """pyannote's pipeline whose embeddings pool per-window masks from file-level trunk frames.

    ``frames_fn(waveforms (B, 1, WINDOW_SAMPLES)) -> (B, C, T)`` may replace the torch trunk (e.g. an
    ONNX Runtime session); ``pool_fn(frames, masks) -> (B, S, D)`` the pooling.

    Any length in bounded memory (``pipelines.bounded``): it diarizes a file it reads block by
    block (a ``core.audio.FileSource`` under the file key ``SOURCE``; ``reference.run_pyannote``
    passes it), and reconstructs without pyannote's (windows, frames, speakers) array."""

    pool_batch: int = 64
    reads_blocks = True
    SOURCE = "diaropt_source"

    def get_segmentations(self, file, hook=None):
        if self.SOURCE not in file:
            return super().get_segmentations(file, hook=hook)
        if hook is not None:
            hook = functools.partial(hook, "segmentation", None)
        return bounded.slide_segmentation(self._segmentation, file[self.SOURCE], hook)

    def reconstruct(self, segmentations, hard_clusters, count):
        return bounded.reconstruct(segmentations, hard_clusters, count)

    def set_band_clustering(self, values: dict | None, cuts: dict[str, float] | None = None) -> None:
        """Cluster telephone-band input with other values: a file whose ``core.audio.band_shares``
        are below ``cuts`` (``core.audio.telephone_band``: little energy below 200 Hz and above
        4 kHz) is clustered with ``values`` (``threshold``, ``min_cluster_size``) instead of the
        pipeline's own; ``None`` turns it off. Each call records what it decided in ``band_decision``."""
        if values is not None and not cuts:
            raise ValueError("telephone-band clustering values need the detector's cuts")
        self.__dict__["_band"] = None if values is None else (dict(values), dict(cuts))

    @property
    def band_clustering(self) -> tuple[dict, dict] | None:
        """(values, cuts) of ``set_band_clustering``, or None when it is off."""
        return self.__dict__.get("_band")

    def apply(self, file, **kwargs):
        from ..core.audio import band_shares, telephone_band

        band = self.__dict__.get("_band")
        self.__dict__["band_decision"] = None
        if band is None:
            return super().apply(file, **kwargs)
        values, below = band
        if isinstance(file, Mapping) and self.SOURCE in file:
            audio = file[self.SOURCE]
        elif isinstance(file, Mapping) and "waveform" in file and file.get("sample_rate") == SAMPLE_RATE:
            audio = file["waveform"]
        else:  # a path, or audio at another rate: pyannote decodes and resamples it
            audio = self._audio(file)[0]
        shares = band_shares(audio)
        telephone = telephone_band(shares, below)  # False for digital silence (nan)
        self.__dict__["band_decision"] = {"shares": shares, "telephone": telephone,
                                          "clustering": dict(values) if telephone else None}
        if not telephone:
            return super().apply(file, **kwargs)
        saved = {k: getattr(self.clustering, k) for k in values}
        try:
            for k, v in values.items():
                setattr(self.clustering, k, v)
            return super().apply(file, **kwargs)
        finally:
            for k, v in saved.items():
                setattr(self.clustering, k, v)

    def set_trunk(self, frames_fn=None, pool_fn=None) -> None:
        reps = self.__dict__.setdefault("_replacements", {})
        reps["frames"], reps["pool"] = frames_fn, pool_fn
        self.__dict__["_version"] = next(_VERSIONS)

    def _embeddings(self, file, binary_segmentations, exclude_overlap, hook):
        masks = embedding_masks(self, binary_segmentations, exclude_overlap)
        frames_of, pool = trunk_and_pool(self._embedding.model_)
        reps = self.__dict__.get("_replacements", {})
        frames_of, pool = reps.get("frames") or frames_of, reps.get("pool") or pool
        if self.SOURCE in file:
            waveform, sample_rate = file[self.SOURCE], file[self.SOURCE].sample_rate
        else:
            waveform, sample_rate = self._audio(file)
        window = binary_segmentations.sliding_window
        with torch.inference_mode():
            blocks = BlockFrames(frames_of, waveform, batch=self.chunk_batch, sample_rate=sample_rate)

            def embed(idx):  # idx: chunk indices in increasing order, batch after batch
                blocks.release_before(window[idx[0]].start)
                f = torch.stack([blocks.window(window[c].start) for c in idx])
                return pool(f, torch.from_numpy(masks[idx]))

            return embed_active_chunks(masks, self._embedding.dimension, self.skip_inactive, self.pool_batch,
                                       embed, hook)


# ---- registered variants ----------------------------------------------------------------

def shared_trunk_variant(embedding: str = "auto") -> Variant:
    pipe = build_shared_trunk_pipeline(embedding, skip_inactive=False)
    return pipeline_variant("shared-trunk", pipe, "reference with the embedding trunk run once per chunk "
                            f"({pipe.embedding_choice.name})")


def shared_trunk_skip_variant(embedding: str = "auto") -> Variant:
    pipe = build_shared_trunk_pipeline(embedding, skip_inactive=True)
    return pipeline_variant("shared-trunk-skip", pipe, "shared trunk + no embedding for inactive speakers "
                            f"({pipe.embedding_choice.name})")
