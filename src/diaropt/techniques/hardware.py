"""Chapter 07, hardware configuration.

CoreML (macOS only): the guide's ``MLModelConfiguration`` maps to coremltools as
``computeUnits`` -> ``compute_units=ct.ComputeUnit.*`` and
``allowLowPrecisionAccumulationOnGPU`` -> ``optimization_hints={...}`` on ``MLModel`` /
``CompiledMLModel``; ``enableAsyncPrediction`` has no Python counterpart in coremltools 9.0.

CPU (measured here): thread counts, inter-op threads, oneDNN on/off, channels-last and
denormal flushing, timed in a **fresh subprocess** (``python -m diaropt.techniques.hardware``,
``measure_groups``) so that nothing of the notebook's process (threads, allocator, flags) leaks
in. Within it, the settings of a group are timed **interleaved round by round**
(``measure.timing.interleaved_ratios``): every call first sets its thread count, oneDNN switch
and denormal flag (runtime settings in torch), so a load spike hits every setting, and each
speed-up is the median of per-round ratios with their range. Inter-op threads can only be set
before any parallel work: that setting gets processes of its own, alternated with default ones
(``interop_ratio``), and its per-round ratios pair those processes. ``thread_scaling`` times both
models at several thread counts, ``other_settings`` one change at a time against the default;
the embedding model is the chapter's choice (CAM++ or WeSpeaker ResNet34).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import pandas as pd

from ..measure.stats import Ratio, speed_ratio

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


def measure_groups(groups: list[list[CpuSetting]], rounds: int = 5, timeout: float = 600) -> list[list[dict]]:
    """Time groups of settings in one fresh process, the settings of a group interleaved round
    by round and compared with the group's first: per setting its fields, median/IQR ms per 10 s
    window of real speech, the speed-up over the group's first (median, range, ``unstable``),
    the per-round ms (``samples_ms``, in round order) and an output checksum. All settings of a
    call share one inter-op thread count, fixed when the process starts."""
    if len({s.interop for g in groups for s in g}) != 1:
        raise ValueError("one process has one inter-op thread count: split the groups")
    payload = json.dumps([[asdict(s) for s in g] for g in groups])
    cmd = [sys.executable, "-m", "diaropt.techniques.hardware", payload, str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{groups}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return [[asdict(s) | r for s, r in zip(g, rows)] for g, rows in zip(groups, out)]


def measure(setting: CpuSetting, repeats: int = 5, timeout: float = 600) -> dict:
    """One setting alone in a fresh process (``measure_groups`` with one group of one)."""
    return measure_groups([[setting]], rounds=repeats, timeout=timeout)[0][0]


def _load(setting: CpuSetting):
    import torch

    from ..core import models
    from ..portable.plain import CAMPPlusModule, PlainSegmentation

    if setting.model == "segmentation":
        model = PlainSegmentation(models.load_segmentation())
    elif setting.embedding == "campplus":
        model = CAMPPlusModule(models.load_campplus())  # with the reference's Kaldi fbank
    else:
        model = models.load_resnet34()
    return model.to(memory_format=torch.channels_last) if setting.channels_last else model


def _child(groups: list[list[CpuSetting]], rounds: int) -> list[list[dict]]:
    import torch

    torch.set_num_interop_threads(groups[0][0].interop)  # must precede any parallel work

    from ..core import data
    from ..core.constants import WINDOW_SAMPLES
    from ..measure.timing import interleaved_ratios

    window = data.pyannote_sample().waveform[:, :WINDOW_SAMPLES][None]
    loaded, out = {}, []

    def call(i: int, s: CpuSetting, model):
        def run():
            torch.set_num_threads(s.threads)
            torch.backends.mkldnn.enabled = s.mkldnn
            torch.set_flush_denormal(s.flush_denormal)
            applied.setdefault(i, (torch.get_num_threads(), torch.backends.mkldnn.enabled))
            return model(window)
        return run

    with torch.inference_mode():
        for group in groups:
            fns, applied = {}, {}  # applied: the threads and oneDNN switch torch reports once a setting is set
            for i, s in enumerate(group):
                key = (s.model, s.embedding, s.channels_last)
                loaded.setdefault(key, _load(s))
                fns[i] = call(i, s, loaded[key])
            checksums = {i: float(fn().double().sum()) for i, fn in fns.items()}
            timings, ratios, samples = interleaved_ratios(fns, rounds=rounds, with_samples=True)
            denormal_ok = torch.set_flush_denormal(True)
            out.append([{"median_ms": 1e3 * timings[i].median, "iqr_ms": 1e3 * timings[i].iqr,
                         "samples_ms": [1e3 * t for t in samples[i]], "speed-up": ratios[i].median,
                         "speed-up low": ratios[i].low, "speed-up high": ratios[i].high, "rounds": ratios[i].repeats,
                         "unstable": ratios[i].unstable, "checksum": checksums[i],
                         "flush_denormal_supported": bool(denormal_ok) if s.flush_denormal else None,
                         "torch_threads": applied[i][0], "mkldnn": applied[i][1],
                         "interop_threads": torch.get_num_interop_threads()}
                        for i, s in enumerate(group)])
            torch.set_flush_denormal(False)
            torch.backends.mkldnn.enabled = True
    return out


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
    """Both models at each thread count, in one fresh process, the counts of a model interleaved
    round by round (``measure_groups``). Returns the raw rows and a table with the speed-up over
    the first count (one thread) per model: median of the per-round ratios and their range."""
    if thread_counts[0] != 1:
        raise ValueError(f"the scaling is relative to one thread: start thread_counts with 1, got {thread_counts}")
    groups = measure_groups([[CpuSetting(model, threads=n, embedding=embedding) for n in thread_counts]
                             for model in MODELS], rounds=repeats)
    rows = [r for g in groups for r in g]
    scale = pd.DataFrame(rows).rename(columns={"speed-up": "speed-up vs 1 thread"})
    return rows, scale


def best_threads(scale: pd.DataFrame) -> pd.DataFrame:
    """The fastest thread count of each model (rows of ``scale``, indexed by model)."""
    return scale.loc[scale.groupby("model")["median_ms"].idxmin()].set_index("model")


def over_cores(scale: pd.DataFrame, cores: int) -> dict[str, Ratio]:
    """Per model, how many times faster its fastest thread count ran than ``cores`` threads,
    round by round (``measure.stats.speed_ratio`` of the per-round ms; 1.0 when they are the
    same count); models not timed at ``cores`` threads are left out."""
    out = {}
    for model, g in scale.groupby("model"):
        at = g.set_index("threads")
        if cores in at.index:
            out[model] = speed_ratio(at.loc[cores, "samples_ms"], at.loc[int(at["median_ms"].idxmin()), "samples_ms"])
    return out


def setting_ratios(settings: pd.DataFrame) -> dict[tuple[str, str], Ratio]:
    """The speed-up of every changed setting of an ``other_settings`` table, ``{(model, setting): Ratio}``."""
    changed = settings.drop(index="default", level="setting")
    return {key: Ratio.from_columns(r)
            for key, r in changed.iterrows()}


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


def interop_ratio(threads: int, rounds: int, embedding: str = "campplus",
                  change: dict | None = None) -> tuple[dict[str, Ratio], dict[str, bool]]:
    """Inter-op threads (``change``, default 2) against the default (1), per model: processes
    alternated default, changed, default, changed, ... for ``rounds`` rounds; each round's ratio
    is the default process's median ms over the changed one's. Also whether every changed
    process's output equals the default's (``same_output`` of the checksums)."""
    change = change or {"interop": 2}
    ms: dict[str, tuple[list, list]] = {m: ([], []) for m in MODELS}
    sums: dict[str, tuple[list, list]] = {m: ([], []) for m in MODELS}
    for _ in range(rounds):
        for side, fields in enumerate(({}, change)):
            groups = measure_groups([[CpuSetting(m, threads=threads, embedding=embedding, **fields)] for m in MODELS],
                                    rounds=3)
            for (r,) in groups:
                ms[r["model"]][side].append(r["median_ms"])
                sums[r["model"]][side].append(r["checksum"])
    same = {m: all(same_output(c, sums[m][0][0]) for c in sums[m][1]) for m in MODELS}
    return {m: speed_ratio(*pair) for m, pair in ms.items()}, same


def other_settings(threads: int, repeats: int, embedding: str = "campplus") -> pd.DataFrame:
    """For each model, the default at ``threads`` and each ``setting_changes`` one at a time:
    median/IQR ms, speed-up over the default (median of per-round ratios, with their range and
    ``unstable`` flag) and whether the output stayed the same. The runtime settings are timed
    interleaved in one process (``measure_groups``), inter-op threads in processes of their own
    (``interop_ratio``)."""
    in_process = {m: [(label, change) for label, change in setting_changes(m, embedding) if "interop" not in change]
                  for m in MODELS}
    groups = measure_groups([[CpuSetting(m, threads=threads, embedding=embedding)]
                             + [CpuSetting(m, threads=threads, embedding=embedding, **c) for _, c in in_process[m]]
                             for m in MODELS], rounds=repeats)
    interop = {label: (change, interop_ratio(threads, max(3, repeats // 2), embedding, change))
               for label, change in setting_changes("segmentation", embedding) if "interop" in change}
    rows = []
    for m, group in zip(MODELS, groups):
        base, *changed = group
        rows.append(_setting_row(m, "default", base, Ratio(1.0, 1.0, 1.0, base["rounds"]), True))
        for label, (_, (ratios, same)) in interop.items():  # its own processes: ms estimated from the ratio
            rows.append(_setting_row(m, label, {"median_ms": base["median_ms"] / ratios[m].median, "iqr_ms": float("nan")},
                                     ratios[m], same[m]))
        for (label, _), r in zip(in_process[m], changed):
            rows.append(_setting_row(m, label, r, Ratio.from_columns(r),
                                     same_output(r["checksum"], base["checksum"])))
    return pd.DataFrame(rows).set_index(["model", "setting"])


def _setting_row(model: str, setting: str, r: dict, ratio: Ratio, same: bool) -> dict:
    return {"model": model, "setting": setting, "median (ms)": r["median_ms"], "IQR (ms)": r["iqr_ms"],
            "speed-up": ratio.median, "speed-up low": ratio.low, "speed-up high": ratio.high,
            "rounds": ratio.repeats, "unstable": ratio.unstable, "same output": same}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("setting")
    p.add_argument("repeats", type=int)
    a = p.parse_args()
    print(json.dumps(_child([[CpuSetting(**d) for d in g] for g in json.loads(a.setting)], a.repeats)))
