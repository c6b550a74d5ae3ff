"""Model cost: FLOPs of a forward pass, parameter counts, stored sizes, windows and the compute floor."""
from __future__ import annotations

import io
import lzma
import math
from pathlib import Path

import torch
import torch.nn as nn

from ..core.constants import LOCAL_SPEAKERS, WINDOW_SECONDS
from .timing import time_call


def count_flops(model: torch.nn.Module, *inputs) -> dict:
    """FLOPs of one forward pass (multiply-add = 2 FLOPs).

    ``torch.utils.flop_counter`` counts convolutions and matrix products; LSTMs run as fused
    kernels it does not see, so their cost is added analytically per layer and direction:
    ``2 * 4 * hidden * (input + hidden)`` per time step. Element-wise ops are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    lstm = {"flops": 0}

    def hook(module, args, output):
        x = args[0]
        steps = x.shape[1] if module.batch_first else x.shape[0]
        batch = x.shape[0] if module.batch_first else x.shape[1]
        dirs = 2 if module.bidirectional else 1
        h = module.hidden_size
        for layer in range(module.num_layers):
            inp = module.input_size if layer == 0 else h * dirs
            lstm["flops"] += dirs * steps * batch * 2 * 4 * h * (inp + h)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    counted = fc.get_total_flops()
    return {"total": counted + lstm["flops"], "conv_matmul": counted, "lstm": lstm["flops"]}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_bytes(module: nn.Module) -> bytes:
    """What ``torch.save(module.state_dict())`` writes."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getvalue()


def state_dict_mb(module: nn.Module) -> float:
    """Serialized size of a torch module's state (what ``torch.save`` writes)."""
    return len(state_bytes(module)) / 1e6


def parameter_mb(*modules: nn.Module) -> float:
    """MB of the distinct parameters of ``modules`` together (a tensor shared by two of them, or
    reachable twice, counts once)."""
    seen = {}
    for m in modules:
        for t in m.parameters():
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values()) / 1e6


def sizes_mb(module: nn.Module) -> dict:
    """What ``torch.save`` writes, and the same bytes xz-compressed (where zeros do pay off)."""
    raw = state_bytes(module)
    return {"stored (MB)": len(raw) / 1e6, "xz-compressed (MB)": len(lzma.compress(raw, preset=6)) / 1e6}


def file_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


def package_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an ``.mlpackage`` / ``.mlmodelc``)."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def model_row(name: str, model: nn.Module, path: Path | None, example: torch.Tensor, *, repeats: int,
              warmup: int = 2) -> dict:
    """One row of a model table: parameters, file size (NaN when no file is known), FLOPs and
    median latency of ``model(example)`` (``example`` is one 10 s window) and the GFLOP/s achieved."""
    flops = count_flops(model, example)
    with torch.inference_mode():
        t = time_call(lambda: model(example), warmup=warmup, repeats=repeats)
    return {"model": name, "parameters (M)": parameter_count(model) / 1e6,
            "file (MB)": file_mb(path) if path is not None else math.nan, "GFLOPs / 10 s": flops["total"] / 1e9,
            "latency / 10 s (ms, median)": 1e3 * t.median, "IQR (ms)": 1e3 * t.iqr,
            "GFLOP/s achieved": flops["total"] / 1e9 / t.median}


def n_windows(seconds: float, step: float, duration: float = WINDOW_SECONDS) -> int:
    """Sliding windows of ``duration`` seconds every ``step`` seconds that pyannote runs over a
    file of ``seconds``: one when the file fits in a window, else the full steps plus the last,
    zero-padded window."""
    return 1 if seconds <= duration else int((seconds - duration) // step) + 2


def compute_floor(file_seconds: list[float], seg_gflops: float, emb_gflops: float, peak_gflops: float, *,
                  wall_seconds: float, audio_seconds: float, step: float = 1.0,
                  speakers: int = LOCAL_SPEAKERS) -> dict:
    """The reference's work at the CPU's matmul peak: one segmentation call per window and one
    embedding call per (window, local speaker), against the measured wall time."""
    windows = sum(n_windows(s, step) for s in file_seconds)
    seg = windows * seg_gflops
    emb = speakers * windows * emb_gflops
    floor_s = (seg + emb) / peak_gflops
    return {"windows": windows, "GFLOPs segmentation": seg, "GFLOPs embedding": emb, "floor at peak (s)": floor_s,
            "measured (s)": wall_seconds, "measured / floor": wall_seconds / floor_s,
            "RTFx at the floor": audio_seconds / floor_s}
