"""Plain ``nn.Module`` versions of the real models: traceable, scriptable, convertible.

pyannote's PyanNet is a Lightning module (``torch.jit.trace`` raises "not attached to a
Trainer") and its SincNet recomputes its band-pass filters from learnable cut-off frequencies
on every call, which coremltools cannot convert. ``PlainSegmentation`` copies the real weights
into plain modules and bakes the SincNet filters, computed once, into a constant ``Conv1d``.
Numerical equivalence with the pyannote model is a test (``tests/test_plain.py``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


class PlainSegmentation(nn.Module):
    """segmentation-3.0 (PyanNet): (B, 1, 160000) waveform -> (B, 589, 7) powerset log-probs."""

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


class PlainCAMPPlus(nn.Module):
    """CAM++ with its fbank front end as a plain module: (B, 1, N) waveform -> (B, 192)."""

    def __init__(self, campplus_embedding):
        super().__init__()
        self.campplus = campplus_embedding.campplus
        self.eval()

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        from .campplus import kaldi_fbank

        return self.campplus(kaldi_fbank(waveforms[:, 0]))
