"""Plain ``nn.Module`` versions of the real models: traceable, scriptable, convertible.

pyannote's PyanNet is a Lightning module (``torch.jit.trace`` raises "not attached to a
Trainer") and its SincNet recomputes its band-pass filters from learnable cut-off frequencies
on every call, which coremltools cannot convert. ``PlainSegmentation`` copies the real weights
into plain modules and bakes the SincNet filters, computed once, into a constant ``Conv1d``.
Numerical equivalence with the pyannote model is a test (``tests/test_fusion.py``).

``CAMPPlusModule`` is the one plain wrapper of the real CAM++ weights, in every form a chapter
needs: with torchaudio's Kaldi fbank (the reference front end) or the convolutional
``ConvFbank`` (convertible to ONNX and CoreML), or on precomputed fbank features
(distillation); returning the 192-d embedding or the trunk's frames (the block trunk); and,
given pyannote's per-speaker masks, pooling one embedding per speaker with shape-static
matmuls (FluidAudio's integrated embedding model, for CoreML).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.campplus import kaldi_fbank
from ..core.constants import SEGMENTATION_FRAMES, WINDOW_SAMPLES
from .fbank import ConvFbank


class PlainSegmentation(nn.Module):
    """segmentation-3.0 (PyanNet): (B, 1, WINDOW_SAMPLES) waveform -> (B, 589, 7) powerset log-probs."""

    def __init__(self, pyannote_model):
        super().__init__()
        m = pyannote_model
        if not m.hparams.lstm["monolithic"]:
            raise NotImplementedError("only the monolithic LSTM of segmentation-3.0 is supported")
        sinc = m.sincnet
        self.wav_norm = copy.deepcopy(sinc.wav_norm1d)
        encoder = sinc.conv1d[0]
        with torch.no_grad():
            filters = encoder.get_filters().detach().clone()  # (80, 1, 251)
        first = nn.Conv1d(1, filters.shape[0], filters.shape[-1], stride=encoder.stride,
                          padding=encoder.padding, bias=False)
        first.weight.data.copy_(filters)
        self.convs = nn.ModuleList([first, copy.deepcopy(sinc.conv1d[1]), copy.deepcopy(sinc.conv1d[2])])
        self.pools = copy.deepcopy(sinc.pool1d)
        self.norms = copy.deepcopy(sinc.norm1d)
        self.lstm = copy.deepcopy(m.lstm)
        self.linear = copy.deepcopy(m.linear)
        self.classifier = copy.deepcopy(m.classifier)
        self.eval()

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.wav_norm(waveforms)
        for i, (conv, pool, norm) in enumerate(zip(self.convs, self.pools, self.norms)):
            x = conv(x)
            if i == 0:
                x = torch.abs(x)
            x = F.leaky_relu(norm(pool(x)))
        x, _ = self.lstm(x.transpose(1, 2))
        for linear in self.linear:
            x = F.leaky_relu(linear(x))
        return F.log_softmax(self.classifier(x), dim=-1)




FRONTS = ("kaldi", "conv", "none")
OUTPUTS = ("embedding", "frames", "speaker-embeddings")


class CAMPPlusModule(nn.Module):
    """The real CAM++ weights as a plain module.

    ``front``: ``"kaldi"`` (torchaudio's Kaldi fbank, as the reference computes it), ``"conv"``
    (``ConvFbank``: the same features as convolution + matmul, convertible) or ``"none"``
    (the input is already fbank, (B, T, 80)).
    ``output``: ``"embedding"`` (B, 192), ``"frames"`` (trunk frames (B, C, T) before pooling)
    or ``"speaker-embeddings"``: ``forward(waveform (B, 1, N), masks (B, S, 589))`` ->
    (B, S, 192), the masks resampled to the trunk's frame rate by a fixed nearest-neighbour
    selection matrix (what ``F.interpolate(mode="nearest")`` does) and pooled with pyannote's
    weighted mean / unbiased std.

    The CAM++ network is shared with ``campplus_embedding`` (a ``CAMPPlusEmbedding``), not copied.
    """

    def __init__(self, campplus_embedding, front: str = "kaldi", output: str = "embedding",
                 num_samples: int = WINDOW_SAMPLES, mask_frames: int = SEGMENTATION_FRAMES):
        super().__init__()
        if front not in FRONTS or output not in OUTPUTS:
            raise ValueError(f"front must be one of {FRONTS} and output one of {OUTPUTS}; got {front!r}, {output!r}")
        self.front, self.output = front, output
        if front == "conv":
            self.fbank = ConvFbank()
        self.campplus = campplus_embedding.campplus
        if output == "speaker-embeddings":
            with torch.no_grad():
                t = self.campplus.frame_features(torch.zeros(1, 1 + (num_samples - 400) // 160, 80)).shape[-1]
            idx = torch.floor(torch.arange(t) * (mask_frames / t)).long().clamp(max=mask_frames - 1)
            self.register_buffer("select", F.one_hot(idx, mask_frames).float().T)  # (589, T)
        self.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.front == "kaldi":
            return kaldi_fbank(x[:, 0])
        if self.front == "conv":
            return self.fbank(x[:, 0])
        return x

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        if self.output == "embedding":
            return self.campplus(self.features(x))
        frames = self.campplus.frame_features(self.features(x))  # (B, C, T)
        if self.output == "frames":
            return frames
        return self._pool_speakers(frames, masks)

    def _pool_speakers(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        w = torch.matmul(masks, self.select)  # (B, S, T)
        v1 = w.sum(dim=-1, keepdim=True) + 1e-8  # (B, S, 1)
        mean = torch.matmul(w, frames.transpose(1, 2)) / v1  # (B, S, C)
        sq = torch.matmul(w, frames.transpose(1, 2).pow(2)) / v1
        v2 = w.pow(2).sum(dim=-1, keepdim=True)
        var = (sq - mean.pow(2)) * v1 / (v1 - v2 / v1 + 1e-8)
        stats = torch.cat([mean, torch.sqrt(torch.clamp(var, min=0.0))], dim=-1)  # (B, S, 2C)
        # the embedding layer (1x1 conv + affine-free BatchNorm) as shape-static matmuls
        dense = self.campplus.dense
        emb = F.linear(stats, dense.linear.weight.squeeze(-1), dense.linear.bias)
        bn = dense.nonlinear.batchnorm
        if isinstance(bn, nn.BatchNorm1d):
            emb = (emb - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        return emb
