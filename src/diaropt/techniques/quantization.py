"""Technique 1: lower precision, on CPU (measured here) and in CoreML (size here, speed on macOS).

CPU int8 uses maintained tools: PyTorch dynamic quantization for the segmentation model, whose
cost is LSTM + Linear (exactly what ``quantize_dynamic`` covers), and ONNX Runtime's quantizer
for the convolutional embedding model (PyTorch dynamic quantization does not cover Conv).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
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


class OrtModule:
    """An ONNX Runtime session called like the torch module it was exported from."""

    def __init__(self, path: Path, input_names: list[str], threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self.path = Path(path)

    def __call__(self, *inputs):
        feeds = {n: np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
                 for n, x in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def export_onnx(module: nn.Module, example: tuple, input_names: list[str], output_name: str, path: Path,
                dynamic_batch: bool = True) -> Path:
    """Export with a dynamic batch axis (legacy TorchScript exporter: no extra dependencies)."""
    axes = {n: {0: "batch"} for n in input_names + [output_name]} if dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(module.eval(), example, str(path), input_names=input_names, output_names=[output_name],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return Path(path)


def nodes_using(onnx_path: Path, initializer_prefix: str) -> list[str]:
    """Names of the graph nodes that read an initializer whose name starts with a prefix."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer if i.name.startswith(initializer_prefix)}
    return [n.name for n in model.graph.node if inits & set(n.input)]


def ort_dynamic_int8(fp32_path: Path, out_path: Path | None = None, exclude_prefix: str | None = "fbank.") -> Path:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized at run time.

    Nodes reading initializers named ``exclude_prefix*`` (the fbank's DFT and mel matrices,
    whose int8 rounding destroys the spectrum) stay in float32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path or Path(tempfile.mkdtemp()) / (Path(fp32_path).stem + "-int8.onnx"))
    exclude = nodes_using(fp32_path, exclude_prefix) if exclude_prefix else []
    quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    return out_path


def file_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


def state_dict_mb(module: nn.Module) -> float:
    """Serialized size of a torch module's state (what ``torch.save`` writes)."""
    import io

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell() / 1e6
