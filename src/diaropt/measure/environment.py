"""The environment recorded with every result: CPU, SIMD flags, threads, memory, versions."""
from __future__ import annotations

import os
import platform
from importlib import metadata

import psutil
import torch

from .timing import time_call


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
