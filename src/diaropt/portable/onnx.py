"""ONNX export and ONNX Runtime: the portable path that runs on this CPU.

``export_onnx`` uses torch's TorchScript-based exporter with a dynamic batch axis; it is not
thread-safe (its state is global), so exports happen one at a time. SincNet's learnable
filters must be baked first (``plain.PlainSegmentation``). ``OrtModule`` calls a session like
the torch module it came from; ``ort_dynamic_int8`` is ONNX Runtime's dynamic quantizer with
the fbank's signal-processing matrices left in float32.

Exports are cached (``cached_export``): the optimized pipeline is built dozens of times in one
build of the book (per variant, per worker process, per test), and each build used to export
both networks again into a new temporary folder that was never removed. The cache lives beside
the verified models (``<models cache>/onnx/``), one file per (weights, exporting code, export
settings, torch version), so a changed or pruned model gets its own file and an unchanged one
is exported once per machine.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.constants import WINDOW_SAMPLES
from .plain import CAMPPlusModule, PlainSegmentation

OPSET = 17


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
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
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


def onnx_cache_dir() -> Path:
    """``<models cache>/onnx``: exported ONNX files, reused across processes and builds."""
    from ..core.models import cache_dir

    path = cache_dir() / "onnx"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _source_bytes(cls: type) -> bytes:
    """The source file of the module defining ``cls`` (read as bytes: ``inspect.getsource`` parses
    the whole file to find one class, about 20 ms a class, which every warm start-up paid); its
    qualified name where there is no source file (a C extension)."""
    try:
        return Path(inspect.getsourcefile(cls)).read_bytes()
    except (OSError, TypeError):
        return f"{cls.__module__}.{cls.__qualname__}".encode()


def export_key(module: nn.Module, example: tuple, input_names: list[str], output_name: str) -> str:
    """sha256 of what decides the exported graph: every tensor of the state dict, the source
    files of the module's class and of its submodules' classes (any edit to them exports anew),
    the input shapes and names, the opset and torch's version."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode() + b"\0")
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    classes = sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}")
    for cls in classes:
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for source in dict.fromkeys(_source_bytes(cls) for cls in classes):
        h.update(source)
    h.update(repr(([tuple(x.shape) for x in example], input_names, output_name, OPSET, torch.__version__)).encode())
    return h.hexdigest()


def cached_export(module: nn.Module, example: tuple, input_names: list[str], output_name: str, name: str) -> Path:
    """``export_onnx`` once per ``export_key``: the file ``onnx_cache_dir()/<name>-<key>.onnx``
    is reused when present (written to a temporary name, then renamed, so a reader never sees
    half a file)."""
    path = onnx_cache_dir() / f"{name}-{export_key(module, example, input_names, output_name)[:20]}.onnx"
    if not path.exists():
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.onnx")
        export_onnx(module, example, input_names, output_name, tmp)
        os.replace(tmp, path)
    return path


def ort_segmentation(segmentation, folder: Path | None = None, threads: int | None = None) -> OrtModule:
    """segmentation-3.0 (SincNet baked; or a ``PlainSegmentation``, e.g. pruned) as an ONNX
    Runtime session with pyannote's I/O; exported into ``folder``, or through the export cache
    when no folder is given."""
    x = torch.zeros(2, 1, WINDOW_SAMPLES)
    plain = segmentation if isinstance(segmentation, PlainSegmentation) else PlainSegmentation(segmentation)
    if folder is None:
        path = cached_export(plain, (x,), ["waveforms"], "log_probs", "segmentation")
    else:
        path = export_onnx(plain, (x,), ["waveforms"], "log_probs", Path(folder) / "segmentation.onnx")
    return OrtModule(path, ["waveforms"], threads)


def ort_trunk(campplus_embedding, folder: Path | None = None, threads: int | None = None) -> OrtModule:
    """The CAM++ trunk (fbank included, as convolution) as an ONNX Runtime session; exported into
    ``folder``, or through the export cache when no folder is given."""
    x = torch.zeros(1, 1, WINDOW_SAMPLES)
    trunk = CAMPPlusModule(campplus_embedding, front="conv", output="frames")
    if folder is None:
        path = cached_export(trunk, (x,), ["waveforms"], "frames", "trunk")
    else:
        path = export_onnx(trunk, (x,), ["waveforms"], "frames", Path(folder) / "trunk.onnx")
    return OrtModule(path, ["waveforms"], threads)
