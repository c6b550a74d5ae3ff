"""CAM++ speaker-embedding network (3D-Speaker, Apache-2.0) and its Kaldi fbank front end.

Architecture follows ``speakerlab/models/campplus/DTDNN.py`` and ``layers.py`` of
modelscope/3D-Speaker, so the released ``campplus_cn_en_common.pt`` state dict loads with
``strict=True``. The final layer is ``DenseLayer(config_str="batchnorm_")``: a 1x1 conv then a
BatchNorm without affine parameters and *no* ReLU (some redistributions add one; it is not in
the original and it costs verification accuracy).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio.models.blocks.pooling import StatsPool

from .constants import SAMPLE_RATE

N_MELS = 80


def _bn_relu(channels: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("batchnorm", nn.BatchNorm1d(channels))
    seq.add_module("relu", nn.ReLU(inplace=True))
    return seq


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """2-D convolutional front module over (freq, time)."""

    def __init__(self, m_channels: int = 32, feat_dim: int = N_MELS):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)  # (B, C, F, T) -> (B, C*F, T)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=padding, dilation=dilation, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by utterance- and segment-level context."""

    def __init__(self, bn_channels, out_channels, kernel_size, dilation, reduction=2, seg_len=100):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size, padding=padding,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.seg_len = seg_len

    def seg_pooling(self, x):
        """Average over segments of ``seg_len`` frames, broadcast back to every frame."""
        seg = F.avg_pool1d(x, kernel_size=self.seg_len, stride=self.seg_len, ceil_mode=True)
        return torch.repeat_interleave(seg, self.seg_len, dim=-1)[..., : x.shape[-1]]

    def forward(self, x):
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self.seg_pooling(x)
        return y * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, bn_channels, kernel_size, dilation):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(self, num_layers, in_channels, out_channels, bn_channels, kernel_size, dilation):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(
                in_channels + i * out_channels, out_channels, bn_channels, kernel_size, dilation))

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class CAMPPlus(nn.Module):
    """CAM++ trunk + statistics pooling + embedding layer. Input: fbank (B, T, 80)."""

    def __init__(self, feat_dim=N_MELS, embedding_size=192, growth_rate=32, bn_size=4, init_channels=128):
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([
            ("tdnn", TDNNLayer(channels, init_channels, 5, stride=2)),
        ]))
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(f"block{i + 1}", CAMDenseTDNNBlock(
                num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size, dilation))
            channels += num_layers * growth_rate
            self.xvector.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.channels = channels
        # "dense" = DenseLayer(channels * 2, embedding_size, config_str="batchnorm_")
        self.dense = nn.Module()
        self.dense.linear = nn.Conv1d(channels * 2, embedding_size, 1, bias=False)
        self.dense.nonlinear = nn.Sequential()
        self.dense.nonlinear.add_module("batchnorm", nn.BatchNorm1d(embedding_size, affine=False))
        self.embedding_size = embedding_size
        self.stats = StatsPool()

    def frame_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """Trunk output before pooling: (B, C, T') with T' = ceil(T / 2)."""
        return self.xvector(self.head(fbank.permute(0, 2, 1)))

    def pool_and_embed(self, frames: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Statistics pooling (pyannote's ``StatsPool``: optional (B, T) or (B, S, T) weights,
        interpolated to the trunk's frame rate) followed by the embedding layer."""
        stats = self.stats(frames, weights=weights)
        shape = stats.shape
        flat = stats.reshape(-1, shape[-1]).unsqueeze(-1)
        emb = self.dense.nonlinear(self.dense.linear(flat).squeeze(-1))
        return emb.reshape(*shape[:-1], self.embedding_size)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.pool_and_embed(self.frame_features(fbank))

    def load_released_state_dict(self, state: dict) -> None:
        """Load 3D-Speaker's released keys (``xvector.dense.*``) strictly."""
        remapped = {(k.replace("xvector.dense.", "dense.", 1) if k.startswith("xvector.dense.") else k): v
                    for k, v in state.items()}
        self.load_state_dict(remapped, strict=True)


def kaldi_fbank(waveforms: torch.Tensor) -> torch.Tensor:
    """3D-Speaker front end: 80-bin Kaldi fbank (25 ms / 10 ms, no dither), mean-normalised.

    waveforms: (B, num_samples) float in [-1, 1] at 16 kHz -> (B, num_frames, 80).
    """
    feats = [kaldi.fbank(w.unsqueeze(0), num_mel_bins=N_MELS, sample_frequency=SAMPLE_RATE, dither=0.0)
             for w in waveforms]
    feats = torch.stack(feats)
    return feats - feats.mean(dim=1, keepdim=True)
