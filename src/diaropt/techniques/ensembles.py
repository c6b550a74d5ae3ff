"""Chapter 10, ensembles: of embedding models, and of shifted segmentation windows.

- ``GuideEnsembleDiarizationModel`` is the guide's snippet as written: ``self.ensemble_weights``
  is never defined, so ``forward`` raises ``AttributeError``. ``WeightedEnsemble`` is the fix
  (a learnable ``nn.Parameter``, uniform at initialisation) and, unlike the snippet, mixes
  *probabilities*: averaging log-probabilities is a geometric mean that no longer sums to one.
  It only makes sense for members with the same output space.
- Two speaker-embedding models do not share a space (CAM++ is 192-d, GE2E 256-d), so their
  outputs cannot be averaged. What can be combined are their *scores*: ``fuse_embeddings``
  concatenates the L2-normalised embeddings scaled by ``sqrt(w_i)`` (weights summing to one),
  whose cosine similarity is exactly ``sum_i w_i cos_i`` (score fusion; a test).
- ``GE2EChunkEmbedding`` runs Resemblyzer's GE2E encoder on one pyannote chunk per local speaker:
  the mel frames where the speaker's mask is on, cut into 1.6 s partials (Resemblyzer's own
  recipe, without overlap), embedded and averaged.
- ``EnsembleDiarization`` computes each member's embeddings once per file (cached in the file
  dict, like pyannote's training cache) and fuses them with the current weights, so thresholds
  and weights can be swept by re-clustering only.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..pipelines.trunks import SharedTrunkDiarization, embed_active_chunks, embedding_masks


class GuideEnsembleDiarizationModel(nn.Module):
    """The guide's snippet, verbatim (``F`` imported): ``ensemble_weights`` is never defined."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, audio):
        outputs = [model(audio) for model in self.models]
        weights = F.softmax(self.ensemble_weights, dim=0)
        output = sum(w * out for w, out in zip(weights, outputs))
        return output


class WeightedEnsemble(nn.Module):
    """Members with the same log-probability outputs, mixed in probability space:
    ``log(sum_i softmax(ensemble_weights)_i * exp(out_i))``."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.ensemble_weights = nn.Parameter(torch.zeros(len(models)))

    def forward(self, audio):
        outputs = torch.stack([model(audio) for model in self.models])  # (M, ...)
        log_w = F.log_softmax(self.ensemble_weights, dim=0).reshape(-1, *[1] * (outputs.dim() - 1))
        return torch.logsumexp(log_w + outputs, dim=0)


class ShiftedInput(nn.Module):
    """Run ``module`` on the window advanced by ``shift`` samples (zero-padded at the end):
    one member of a test-time-augmentation ensemble over shifted windows."""

    def __init__(self, module: nn.Module, shift: int):
        super().__init__()
        self.module, self.shift = module, int(shift)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if self.shift == 0:
            return self.module(waveforms)
        shifted = F.pad(waveforms[..., self.shift:], (0, self.shift))
        return self.module(shifted)


def shifted_tta(module: nn.Module, shifts: list[int]) -> WeightedEnsemble:
    """Test-time augmentation: the uniform probability mix of ``module`` over input shifts."""
    return WeightedEnsemble([ShiftedInput(module, s) for s in shifts]).eval()


def fuse_embeddings(embeddings: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Score fusion as one embedding: concat of ``sqrt(w_i) * e_i / |e_i|`` (weights sum to 1).

    The cosine similarity of two fused vectors is ``sum_i w_i * cos_i``; NaN (inactive
    speakers) propagate."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(embeddings) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"need one non-negative weight per member, summing to 1; got {weights}")
    parts = []
    for e, wi in zip(embeddings, w):
        norm = np.linalg.norm(e, axis=-1, keepdims=True)
        parts.append(np.sqrt(wi) * e / norm)
    return np.concatenate(parts, axis=-1).astype(np.float32)


class GE2EChunkEmbedding:
    """Resemblyzer's GE2E encoder on pyannote chunks: (B, 1, N), masks (B, S, F) -> (B, S, 256).

    Per chunk: volume-normalised as Resemblyzer does (-30 dBFS, increase only), 40-band mel
    (Resemblyzer's librosa front end), mask resampled to the mel frame rate by nearest
    neighbour; the speaker's active frames are cut into 160-frame partials (a shorter remainder
    of at least ``min_frames`` is kept), embedded in one packed LSTM batch and averaged."""

    partial_frames = 160

    def __init__(self, encoder, min_frames: int = 40):
        self.encoder, self.min_frames = encoder, min_frames
        self.dimension = encoder.linear.out_features
        self.seconds = 0.0

    def _mel(self, wav: np.ndarray) -> np.ndarray:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram
        from resemblyzer.hparams import audio_norm_target_dBFS

        return wav_to_mel_spectrogram(normalize_volume(wav, audio_norm_target_dBFS, increase_only=True))

    def partials(self, mel: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        idx = np.floor(np.arange(len(mel)) * (len(mask) / len(mel))).astype(int).clip(max=len(mask) - 1)
        active = mel[mask[idx] > 0.5]
        n, p = len(active), self.partial_frames
        if n < self.min_frames:
            return []
        if n <= p:
            return [active]
        cuts = [active[s: s + p] for s in range(0, n - p + 1, p)]
        if n % p >= self.min_frames:
            cuts.append(active[n - p:])  # the remainder, as a full partial ending at the last frame
        return cuts

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        b, s = masks.shape[:2]
        out = torch.zeros(b, s, self.dimension)
        seqs, owner = [], []
        for i in range(b):
            mel = self._mel(waveforms[i, 0].numpy().astype(np.float32))
            for j in range(s):
                for part in self.partials(mel, masks[i, j].numpy()):
                    seqs.append(torch.from_numpy(np.ascontiguousarray(part)))
                    owner.append((i, j))
        if seqs:
            for group in self._groups(seqs):
                for k, e in zip(group, self._embed([seqs[k] for k in group])):
                    i, j = owner[k]
                    out[i, j] += e
        out = F.normalize(out, dim=-1)
        out[out.norm(dim=-1) == 0] = float("nan")  # no partial: no embedding
        self.seconds += time.perf_counter() - t0
        return out


    def _groups(self, seqs: list[torch.Tensor]) -> list[list[int]]:
        """Full-length partials in one dense batch, shorter ones in one packed batch."""
        full = [k for k, q in enumerate(seqs) if len(q) == self.partial_frames]
        rest = [k for k, q in enumerate(seqs) if len(q) != self.partial_frames]
        return [g for g in (full, rest) if g]

    def _embed(self, seqs: list[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            if all(len(q) == len(seqs[0]) for q in seqs):
                batch = torch.stack(seqs)
            else:
                batch = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
            _, (hidden, _) = self.encoder.lstm(batch)
            return F.normalize(self.encoder.relu(self.encoder.linear(hidden[-1])), dim=-1)


class EnsembleDiarization(SharedTrunkDiarization):
    """pyannote's pipeline whose embeddings fuse several models' (cached per file).

    ``members``: {name: (fn(waveforms (B, 1, N), masks (B, S, F)) -> (B, S, D), D)};
    ``weights``: {name: weight} (summing to 1; members with weight 0 are not computed)."""

    CACHE = "diaropt/ensemble"

    def set_members(self, members: dict, weights: dict) -> None:
        self.__dict__["_members"] = dict(members)
        self.set_weights(weights)

    def set_weights(self, weights: dict) -> None:
        unknown = set(weights) - set(self.__dict__["_members"])
        if unknown:
            raise ValueError(f"no member named {sorted(unknown)}")
        self.__dict__["_weights"] = {k: float(v) for k, v in weights.items() if v > 0}

    def member_embeddings(self, file, name: str, masks: np.ndarray, window) -> np.ndarray:
        cache = file.setdefault(self.CACHE, {})
        if name not in cache:
            (fn, dim), t0 = self.__dict__["_members"][name], time.perf_counter()

            def embed(idx):
                wav = torch.stack([self._audio.crop(file, window[c], mode="pad")[0] for c in idx])
                return fn(wav, torch.from_numpy(masks[idx]))

            with torch.inference_mode():
                cache[name] = embed_active_chunks(masks, dim, True, self.chunk_batch, embed)
            cache[f"{name} seconds"] = time.perf_counter() - t0
        return cache[name]

    def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
        masks = embedding_masks(self, binary_segmentations, exclude_overlap)
        window = binary_segmentations.sliding_window
        weights = self.__dict__["_weights"]
        embs = [self.member_embeddings(file, name, masks, window) for name in weights]
        return fuse_embeddings(embs, list(weights.values()))


def embedding_seconds(files: list[dict], name: str) -> float:
    """Wall seconds member ``name`` spent embedding the given (cached) files."""
    return sum(f[EnsembleDiarization.CACHE][f"{name} seconds"] for f in files)
