"""ONNX export and ONNX Runtime: the portable path that runs on this CPU.

``export_onnx`` uses torch's TorchScript-based exporter with a dynamic batch axis; it is not
thread-safe (its state is global), so exports happen one at a time. SincNet's learnable
filters must be baked first (``plain.PlainSegmentation``). ``OrtModule`` calls a session like
the torch module it came from; ``ort_dynamic_int8`` is ONNX Runtime's dynamic quantizer with
the fbank's signal-processing matrices left in float32.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.constants import WINDOW_SAMPLES
from .plain import CAMPPlusModule, PlainSegmentation


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


def ort_segmentation(segmentation, folder: Path, threads: int | None = None) -> OrtModule:
    """segmentation-3.0 (SincNet baked; or a ``PlainSegmentation``, e.g. pruned) as an ONNX
    Runtime session with pyannote's I/O."""
    x = torch.zeros(2, 1, WINDOW_SAMPLES)
    plain = segmentation if isinstance(segmentation, PlainSegmentation) else PlainSegmentation(segmentation)
    path = export_onnx(plain, (x,), ["waveforms"], "log_probs", Path(folder) / "segmentation.onnx")
    return OrtModule(path, ["waveforms"], threads)


def ort_trunk(campplus_embedding, folder: Path, threads: int | None = None) -> OrtModule:
    """The CAM++ trunk (fbank included, as convolution) as an ONNX Runtime session."""
    x = torch.zeros(1, 1, WINDOW_SAMPLES)
    trunk = CAMPPlusModule(campplus_embedding, front="conv", output="frames")
    path = export_onnx(trunk, (x,), ["waveforms"], "frames", Path(folder) / "trunk.onnx")
    return OrtModule(path, ["waveforms"], threads)
