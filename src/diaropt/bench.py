"""Timing harness and environment record.

Rules: warm up, repeat, report the median and the spread (min, max, IQR); compare variants as
ratios measured in the same process; record the environment with every result.
"""
from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata

import psutil
import torch


@dataclass
class Timing:
    median: float
    min: float
    max: float
    iqr: float
    repeats: int
    samples: list

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples: list[float]) -> Timing:
    s = sorted(samples)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = s[-1] - s[0]
    return Timing(statistics.median(s), s[0], s[-1], iqr, len(s), s)


def time_call(fn, *, warmup: int = 1, repeats: int = 5) -> Timing:
    """Wall-clock seconds of ``fn()``: ``warmup`` unrecorded calls, then ``repeats`` recorded."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


class PeakRSS:
    """Context manager sampling this process's resident memory; ``.peak_mib`` afterwards."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx", "vnni"))]
    except OSError:
        pass
    return []


PACKAGES = ("torch", "torchaudio", "pyannote.audio", "pyannote.metrics", "pyannote.pipeline",
            "coremltools", "onnxruntime", "numpy", "scipy", "jupyter-book", "myst-nb", "papermill")


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    """Machine, threads and library versions: stored with every result."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(),
        "torch_parallel": torch.__config__.parallel_info().splitlines()[:6],
    }


def matmul_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured fp32 GEMM throughput of this CPU with torch's threads: a practical compute peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_call(lambda: a @ b, warmup=2, repeats=repeats)
    return 2 * n**3 / t.min / 1e9


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
