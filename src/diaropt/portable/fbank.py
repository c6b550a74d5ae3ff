"""Kaldi fbank as convolution + matmul: the same features, in ops every converter understands.

``torchaudio.compliance.kaldi.fbank`` frames the signal with ``as_strided`` and calls
``torch.fft.rfft``; neither converts to CoreML. Per 25 ms frame, everything up to the power
spectrum is *linear*: DC-offset removal, pre-emphasis (0.97), the Povey window and the
512-point real DFT. Their product is one (2 x 257, 400) matrix, applied as a ``Conv1d`` with
stride 160. Then power = re^2 + im^2, Kaldi's mel filterbank (a matmul), log with Kaldi's
floor, and 3D-Speaker's mean normalisation. ``tests/test_coreml.py`` checks it against
torchaudio.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi

FRAME, HOP, NFFT, N_MELS, SR = 400, 160, 512, 80, 16000


def _frame_pipeline(frames: torch.Tensor) -> torch.Tensor:
    """Kaldi's per-frame linear steps on (n, 400) frames -> (n, 257) complex spectrum."""
    x = frames - frames.mean(dim=1, keepdim=True)  # remove_dc_offset
    prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # Kaldi replicates the first sample
    x = x - 0.97 * prev  # preemphasis_coefficient
    window = torch.hann_window(FRAME, periodic=False, dtype=torch.float64).pow(0.85)  # povey
    x = x * window
    return torch.fft.rfft(F.pad(x, (0, NFFT - FRAME)), dim=1)


class ConvFbank(nn.Module):
    """(B, N) waveform in [-1, 1] at 16 kHz -> (B, frames, 80) mean-normalised log-mel fbank."""

    def __init__(self, mean_normalize: bool = True):
        super().__init__()
        basis = _frame_pipeline(torch.eye(FRAME, dtype=torch.float64))  # (400, 257): row j = response to e_j
        kernel = torch.cat([basis.real.T, basis.imag.T], dim=0)  # (514, 400)
        self.register_buffer("kernel", kernel.float().unsqueeze(1))
        mel, _ = kaldi.get_mel_banks(N_MELS, NFFT, float(SR), 20.0, 0.0, 100.0, -500.0, 1.0)
        self.register_buffer("mel", F.pad(mel, (0, 1)).float())  # (80, 257)
        self.eps = float(torch.finfo(torch.float32).eps)
        self.mean_normalize = mean_normalize

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = F.conv1d(waveforms.unsqueeze(1), self.kernel, stride=HOP)  # (B, 514, frames)
        re, im = spec[:, : NFFT // 2 + 1], spec[:, NFFT // 2 + 1:]
        power = re * re + im * im
        logmel = torch.log(torch.clamp(torch.matmul(self.mel, power), min=self.eps)).transpose(1, 2)
        if self.mean_normalize:
            logmel = logmel - logmel.mean(dim=1, keepdim=True)
        return logmel
