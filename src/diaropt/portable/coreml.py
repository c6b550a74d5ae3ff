"""CoreML artifacts: convert, compress, inspect, and read compressed weights back into torch.

coremltools converts and compresses on Linux but cannot run a model there (prediction is
macOS-only), so on Linux this module measures what can be measured: size on disk, operations,
conversion time, and the accuracy of *exactly the compressed weights coremltools wrote*,
loaded back into the torch model (``compressed_weights_into_torch``). The embedding model is
converted in FluidAudio's integrated form, ``plain.CAMPPlusModule(..., front="conv",
output="speaker-embeddings")``.
"""
from __future__ import annotations

import collections
import copy
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..measure.cost import package_bytes

FRAGILE_OPS = {"log", "softmax", "instance_norm", "batch_norm", "layer_norm", "reduce_mean", "reduce_sum",
               "sqrt", "rsqrt", "real_div", "pow", "square", "exp", "reduce_l2_norm"}


def can_predict() -> bool:
    """CoreML prediction exists only on macOS."""
    return platform.system() == "Darwin"


# ------------------------------------------------------------------------------------------
# conversion and compression


@dataclass
class Artifact:
    name: str
    model: object  # coremltools MLModel
    seconds: float
    path: Path | None = None

    @property
    def size_mb(self) -> float:
        return package_bytes(self.path) / 1e6 if self.path else float("nan")


def convert(module: nn.Module, example: tuple, input_names: list[str], output_name: str,
            precision: str = "fp32"):
    """Trace and convert to an ML program (macOS 15 target: per-grouped-channel palettization needs it); precision fp32, fp16 or
    ``selective-fp16`` (fp16 except ``FRAGILE_OPS``). Returns (MLModel, seconds)."""
    import coremltools as ct

    t0 = time.perf_counter()
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
    if precision == "fp32":
        cp = ct.precision.FLOAT32
    elif precision == "fp16":
        cp = ct.precision.FLOAT16
    elif precision == "selective-fp16":
        cp = ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type not in FRAGILE_OPS)
    else:
        raise ValueError(precision)
    inputs = [ct.TensorType(name=n, shape=tuple(x.shape)) for n, x in zip(input_names, example)]
    ml = ct.convert(traced, inputs=inputs, outputs=[ct.TensorType(name=output_name)], convert_to="mlprogram",
                    compute_precision=cp, minimum_deployment_target=ct.target.macOS15)
    return ml, time.perf_counter() - t0


GROUPED_16 = {"granularity": "per_grouped_channel", "group_size": 16}
COMPRESSIONS = {
    "int8 linear (per channel)": ("linear", {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}),
    "palettize 8-bit per tensor": ("palettize", {"mode": "kmeans", "nbits": 8, "granularity": "per_tensor"}),
    "palettize 4-bit per tensor": ("palettize", {"mode": "kmeans", "nbits": 4, "granularity": "per_tensor"}),
    "palettize 4-bit grouped (16 ch)": ("palettize", {"mode": "kmeans", "nbits": 4, **GROUPED_16}),
}


def compress(mlmodel, scheme: str, exclude: tuple[str, ...] = ("fbank",)):
    """Apply a ``COMPRESSIONS`` scheme with coremltools.optimize.coreml. Returns (MLModel, seconds).

    Constants whose name contains an ``exclude`` string (by default the fbank's DFT and mel
    matrices: signal processing, not learnt weights) are skipped through ``op_name_configs``;
    weights under coremltools' default threshold (2048 elements) are skipped as usual.
    """
    import coremltools.optimize.coreml as cto

    kind, kw = COMPRESSIONS[scheme]
    skip = {op.name: None for fn in mlmodel._mil_program.functions.values() for op in fn.operations
            if op.op_type == "const" and any(e in op.name for e in exclude)}
    t0 = time.perf_counter()
    if kind == "linear":
        cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(**kw), op_name_configs=skip)
        out = cto.linear_quantize_weights(mlmodel, cfg)
    else:
        cfg = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(**kw), op_name_configs=skip)
        out = cto.palettize_weights(mlmodel, cfg)
    return out, time.perf_counter() - t0


def save(mlmodel, path: Path) -> Path:
    path = Path(path)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    mlmodel.save(str(path))
    return path


def op_histogram(mlmodel) -> collections.Counter:
    """Operation types of the main function of an ML program."""
    spec = mlmodel.get_spec()
    return collections.Counter(op.type for f in spec.mlProgram.functions.values()
                               for b in f.block_specializations.values() for op in b.operations)


def mil_text_histogram(mil_path: Path) -> collections.Counter:
    """Operation types in a compiled model's ``model.mil`` (e.g. FluidAudio's shipped .mlmodelc)."""
    text = Path(mil_path).read_text()
    return collections.Counter(re.findall(r"=\s*([a-z_0-9]+)\(", text))


# ------------------------------------------------------------------------------------------
# compressed weights back into torch


def dense_compressed_weights(mlmodel) -> dict[str, np.ndarray]:
    """{op name: dense float32 values} of every compressed (constexpr_*) weight in the program."""
    prog = mlmodel._mil_program
    out = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type.startswith("constexpr_"):
                out[op.name] = np.asarray(op.materialized_val_inference(), dtype=np.float32)
    return out


def _gate_permutations(p: np.ndarray):
    """Candidate layouts of a torch tensor inside the converted program: as is, transposed,
    or with LSTM gates reordered (torch i,f,g,o -> CoreML i,f,o,g)."""
    yield "identity", lambda a: a, lambda a: a
    if p.ndim == 2:  # the converter may constant-fold a transpose into a weight
        yield "transposed", lambda a: a.T, lambda a: a.T
    if p.ndim >= 1 and p.shape[0] % 4 == 0:
        h = p.shape[0] // 4
        order = np.concatenate([np.arange(0, 2 * h), np.arange(3 * h, 4 * h), np.arange(2 * h, 3 * h)])  # ifgo -> ifog
        inv = np.argsort(order)
        yield "lstm-gates", lambda a, o=order: a[o], lambda a, i=inv: a[i]


def compressed_weights_into_torch(module: nn.Module, mlmodel, max_rel_error: float = 0.25) -> tuple[nn.Module, list[dict]]:
    """A copy of ``module`` whose parameters (and float buffers, e.g. the fbank matrices) are
    replaced by the compressed model's weights.

    Each compressed tensor is matched to the torch tensor (same number of elements, up to
    LSTM gate reordering) it approximates best; a match worse than ``max_rel_error`` or a
    parameter matched twice is an error. Returns (module copy, match report).
    """
    new = copy.deepcopy(module)
    tensors = dict(new.named_parameters()) | {n: b for n, b in new.named_buffers() if b.is_floating_point()}
    params = {n: p.detach().numpy() for n, p in tensors.items() if p.numel() >= 64}
    used, report = set(), []
    for op_name, dense in dense_compressed_weights(mlmodel).items():
        best = None
        for name, p in params.items():
            if p.size != dense.size:
                continue
            for layout, fwd, inv in _gate_permutations(p):
                ref = fwd(p)
                err = float(np.linalg.norm(dense.reshape(ref.shape) - ref) / (np.linalg.norm(ref) + 1e-12))
                if best is None or err < best[0]:
                    best = (err, name, layout, inv, ref.shape)
        if best is None or best[0] > max_rel_error:
            raise RuntimeError(f"no torch parameter matches compressed weight {op_name} ({dense.shape})")
        err, name, layout, inv, layout_shape = best
        if name in used:
            raise RuntimeError(f"{name} matched twice (second: {op_name})")
        used.add(name)
        target = tensors[name]
        with torch.no_grad():
            target.copy_(torch.from_numpy(inv(dense.reshape(layout_shape)).reshape(target.shape).copy()))
        report.append({"op": op_name, "param": name, "layout": layout, "relative error": err})
    return new, report

