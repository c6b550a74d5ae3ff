"""Chapter 03, quantization: lower precision, on CPU (measured here) and in CoreML (size here,
speed on macOS).

CPU int8 uses maintained tools: PyTorch dynamic quantization for the segmentation model, whose
cost is LSTM + Linear (exactly what ``quantize_dynamic`` covers), and ONNX Runtime's quantizer
for the convolutional embedding model (PyTorch dynamic quantization does not cover Conv).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def torch_dynamic_int8(module: nn.Module) -> nn.Module:
    """int8 weights, dynamically quantized activations for LSTM and Linear layers."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(module, {nn.LSTM, nn.Linear}, dtype=torch.qint8)


class HalfPrecision(nn.Module):
    """Run a module in float16 (weights and arithmetic), float32 in and out."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.half()

    def forward(self, *inputs):
        out = self.module(*[x.half() if x.is_floating_point() else x for x in inputs])
        return out.float()


def fp16_supported(module: nn.Module, *example) -> tuple[bool, str]:
    """Whether every op of ``module`` runs in float16 on this CPU (tries it on a copy)."""
    import copy

    try:
        with torch.inference_mode():
            HalfPrecision(copy.deepcopy(module))(*example)
        return True, "ok"
    except Exception as e:  # noqa: BLE001 - the message is the result
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
