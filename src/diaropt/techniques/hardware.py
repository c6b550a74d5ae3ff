"""Chapter 07, hardware configuration.

CoreML (macOS only): the guide's ``MLModelConfiguration`` maps to coremltools as
``computeUnits`` -> ``compute_units=ct.ComputeUnit.*`` and
``allowLowPrecisionAccumulationOnGPU`` -> ``optimization_hints={...}`` on ``MLModel`` /
``CompiledMLModel``; ``enableAsyncPrediction`` has no Python counterpart in coremltools 9.0.

CPU (measured here): thread counts, inter-op threads, oneDNN on/off, channels-last and
denormal flushing. Each setting is timed in a **fresh subprocess** (``python -m
diaropt.techniques.hardware``): inter-op threads can only be set before any parallel work, and
a setting must not leak into the next measurement.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

COMPUTE_UNITS = {  # the guide's Swift value -> coremltools
    ".all": "ALL", ".cpuAndGPU": "CPU_AND_GPU", ".cpuOnly": "CPU_ONLY", ".cpuAndNeuralEngine": "CPU_AND_NE"}


@dataclass(frozen=True)
class CpuSetting:
    model: str  # "segmentation" or "embedding"
    threads: int = 2
    interop: int = 1
    mkldnn: bool = True
    channels_last: bool = False
    flush_denormal: bool = False

    def __post_init__(self):
        if self.model not in ("segmentation", "embedding"):
            raise ValueError(f"model must be 'segmentation' or 'embedding', got {self.model!r}")

    def label(self) -> str:
        parts = [f"{self.threads} thr", f"interop {self.interop}"]
        parts += [] if self.mkldnn else ["oneDNN off"]
        parts += ["channels-last"] if self.channels_last else []
        parts += ["flush denormals"] if self.flush_denormal else []
        return ", ".join(parts)


def measure(setting: CpuSetting, repeats: int = 10, timeout: float = 600) -> dict:
    """Median/IQR ms per 10 s window of real speech under ``setting``, in a fresh process."""
    cmd = [sys.executable, "-m", "diaropt.techniques.hardware", json.dumps(asdict(setting)), str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{setting}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return asdict(setting) | json.loads(proc.stdout.strip().splitlines()[-1])


def _child(setting: CpuSetting, repeats: int) -> dict:
    import torch

    torch.set_num_interop_threads(setting.interop)  # must precede any parallel work
    torch.set_num_threads(setting.threads)
    torch.backends.mkldnn.enabled = setting.mkldnn
    denormal_ok = torch.set_flush_denormal(setting.flush_denormal)

    from ..core import data, models
    from ..core.constants import WINDOW_SAMPLES
    from ..measure.timing import time_call
    from ..portable.plain import CAMPPlusModule, PlainSegmentation

    window = data.pyannote_sample().waveform[:, :WINDOW_SAMPLES][None]
    if setting.model == "segmentation":
        model = PlainSegmentation(models.load_segmentation())
    else:
        model = CAMPPlusModule(models.load_campplus())
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(window)
        t = time_call(lambda: model(window), warmup=2, repeats=repeats)
    return {"median_ms": 1e3 * t.median, "iqr_ms": 1e3 * t.iqr, "checksum": float(out.double().sum()),
            "flush_denormal_supported": bool(denormal_ok) if setting.flush_denormal else None,
            "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("setting")
    p.add_argument("repeats", type=int)
    a = p.parse_args()
    print(json.dumps(_child(CpuSetting(**json.loads(a.setting)), a.repeats)))
