"""Chapter 07, hardware configuration.

CoreML (macOS only): the guide's ``MLModelConfiguration`` maps to coremltools as
``computeUnits`` -> ``compute_units=ct.ComputeUnit.*`` and
``allowLowPrecisionAccumulationOnGPU`` -> ``optimization_hints={...}`` on ``MLModel`` /
``CompiledMLModel``; ``enableAsyncPrediction`` has no Python counterpart in coremltools 9.0.

CPU (measured here): thread counts, inter-op threads, oneDNN on/off, channels-last and
denormal flushing. Each setting is timed in a **fresh subprocess** (``python -m
diaropt.techniques.hardware``): inter-op threads can only be set before any parallel work, and
a setting must not leak into the next measurement. ``thread_scaling`` times both models at
several thread counts, ``other_settings`` one change at a time against the default; the
embedding model is the chapter's choice (CAM++ or WeSpeaker ResNet34).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import pandas as pd

COMPUTE_UNITS = {  # the guide's Swift value -> coremltools
    ".all": "ALL", ".cpuAndGPU": "CPU_AND_GPU", ".cpuOnly": "CPU_ONLY", ".cpuAndNeuralEngine": "CPU_AND_NE"}
EMBEDDINGS = {"campplus": "CAM++", "resnet34": "WeSpeaker ResNet34"}  # embedding model -> display name
MODELS = ("segmentation", "embedding")
LOW_PRECISION_GPU = {"allowLowPrecisionAccumulationOnGPU": True}
UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")  # ct.ComputeUnit names, in table order

SETTINGS = {
    "full": {"repeats": 5, "thread_counts": [1, 2, 3, 4]},
    "smoke": {"repeats": 3, "thread_counts": [1, 2]},
}


@dataclass(frozen=True)
class CpuSetting:
    model: str  # "segmentation" or "embedding"
    threads: int = 2
    interop: int = 1
    mkldnn: bool = True
    channels_last: bool = False
    flush_denormal: bool = False
    embedding: str = "campplus"  # which embedding model "embedding" means

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be 'segmentation' or 'embedding', got {self.model!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {tuple(EMBEDDINGS)}, got {self.embedding!r}")

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
    elif setting.embedding == "campplus":
        model = CAMPPlusModule(models.load_campplus())  # with the reference's Kaldi fbank
    else:
        model = models.load_resnet34()
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(window)
        t = time_call(lambda: model(window), warmup=2, repeats=repeats)
    return {"median_ms": 1e3 * t.median, "iqr_ms": 1e3 * t.iqr, "checksum": float(out.double().sum()),
            "flush_denormal_supported": bool(denormal_ok) if setting.flush_denormal else None,
            "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


# ---- the chapter's tables ----------------------------------------------------------------

def coreml_compute_units(path, repeats: int) -> pd.DataFrame:
    """macOS only: a compiled CoreML model (e.g. FluidAudio's segmentation ``.mlmodelc``) timed
    on one zero window under each compute-unit setting, with and without low-precision GPU
    accumulation."""
    import coremltools as ct
    import numpy as np

    from ..core.constants import WINDOW_SAMPLES
    from ..measure.timing import time_call

    x = {"audio": np.zeros((1, 1, WINDOW_SAMPLES), np.float32)}
    rows = []
    for name in UNITS:
        for hints in (None, LOW_PRECISION_GPU):
            m = ct.models.CompiledMLModel(str(path), compute_units=getattr(ct.ComputeUnit, name), optimization_hints=hints)
            t = time_call(lambda m=m: m.predict(x), warmup=3, repeats=repeats)
            rows.append({"compute units": name, "low-precision GPU accumulation": bool(hints),
                         "median (ms)": 1e3 * t.median, "IQR (ms)": 1e3 * t.iqr})
    return pd.DataFrame(rows)


def coreml_not_run() -> pd.DataFrame:
    """The compute-unit table where CoreML cannot predict: every row says it did not run."""
    return pd.DataFrame([{"compute units": k, "median (ms)": "not run (Linux)"} for k in UNITS])


def thread_scaling(thread_counts: list[int], repeats: int, embedding: str = "campplus") -> tuple[list[dict], pd.DataFrame]:
    """Both models at each thread count (fresh process each). Returns the raw rows and a table
    with the speed-up over one thread per model."""
    rows = [measure(CpuSetting(model, threads=n, embedding=embedding), repeats=repeats)
            for model in MODELS for n in thread_counts]
    scale = pd.DataFrame(rows)
    for model in MODELS:
        one = scale[(scale.model == model) & (scale.threads == 1)]["median_ms"].iloc[0]
        scale.loc[scale.model == model, "speed-up vs 1 thread"] = one / scale.loc[scale.model == model, "median_ms"]
    return rows, scale


def best_threads(scale: pd.DataFrame) -> pd.DataFrame:
    """The fastest thread count of each model (rows of ``scale``, indexed by model)."""
    return scale.loc[scale.groupby("model")["median_ms"].idxmin()].set_index("model")


def setting_changes(model: str, embedding: str = "campplus") -> list[tuple[str, dict]]:
    """(label, CpuSetting fields) of the changes tried against the default; channels-last only
    for the embedding model, the one with 2-D convolutions."""
    changes = [("inter-op threads 2", {"interop": 2}), ("oneDNN (mkldnn) off", {"mkldnn": False}),
               ("flush denormals", {"flush_denormal": True})]
    if model == "embedding":
        convs = "FCM head 2-D convs" if embedding == "campplus" else "2-D convs"
        changes.append((f"channels-last ({convs})", {"channels_last": True}))
    return changes


def same_output(checksum: float, base: float) -> bool:
    """Output checksums equal up to 1e-3 relative (absolute below 1)."""
    return abs(checksum - base) <= 1e-3 * max(1.0, abs(base))


def other_settings(threads: int, repeats: int, embedding: str = "campplus") -> pd.DataFrame:
    """For each model, the default at ``threads`` and each ``setting_changes`` one at a time:
    median/IQR ms, speed-up over the default and whether the output stayed the same."""
    rows = []
    for model in MODELS:
        base = measure(CpuSetting(model, threads=threads, embedding=embedding), repeats=repeats)
        rows.append({"model": model, "setting": "default", "median (ms)": base["median_ms"], "IQR (ms)": base["iqr_ms"],
                     "speed-up": 1.0, "same output": True})
        for label, change in setting_changes(model, embedding):
            r = measure(CpuSetting(model, threads=threads, embedding=embedding, **change), repeats=repeats)
            rows.append({"model": model, "setting": label, "median (ms)": r["median_ms"], "IQR (ms)": r["iqr_ms"],
                         "speed-up": base["median_ms"] / r["median_ms"],
                         "same output": same_output(r["checksum"], base["checksum"])})
    return pd.DataFrame(rows).set_index(["model", "setting"])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("setting")
    p.add_argument("repeats", type=int)
    a = p.parse_args()
    print(json.dumps(_child(CpuSetting(**json.loads(a.setting)), a.repeats)))
