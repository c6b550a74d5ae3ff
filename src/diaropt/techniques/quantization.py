"""Chapter 03, quantization: lower precision, on CPU (measured here) and in CoreML (size here,
speed on macOS).

The guide promises that fp16 halves the models and makes them ~1.5x faster for < 0.5 % DER,
and that int8 (``palettize_weights`` with ``nbits=8``) makes them 4x smaller and 2-3x faster
for < 1 % DER. The chapter measures three things:

1. **CoreML artifacts** (``build_artifacts``): both models converted from their plain torch
   versions (fp32, fp16, selective fp16) and compressed with every scheme of
   ``portable.coreml.COMPRESSIONS``; size on disk, operations, conversion time, with
   FluidAudio's shipped segmentation model as a reference point.
2. **Accuracy of exactly those weights** (``accuracy_table``, ``der_table``): CoreML cannot
   predict on Linux, so the compressed weights coremltools wrote are read back into the torch
   models, which then run on real windows (frame agreement, cosine) and in the pipeline (DER,
   one model changed at a time, against fp32 in the same setting).
3. **The CPU counterpart** (``cpu_table``): int8 with maintained tools — PyTorch dynamic
   quantization for the segmentation model, whose cost is LSTM + Linear (exactly what
   ``quantize_dynamic`` covers), and ONNX Runtime's quantizer for the convolutional embedding
   model (PyTorch dynamic quantization does not cover Conv) — and fp16 arithmetic.

The embedding model is converted in FluidAudio's *integrated* form
(``plain.CAMPPlusModule(..., front="conv", output="speaker-embeddings")``), which is built on
CAM++'s module structure: with another embedding model (WeSpeaker ResNet34) only the
segmentation model is converted and measured, and ``embedding_note`` says why.
"""
from __future__ import annotations

import contextlib
import copy
import math
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from ..book.verdicts import der_verdict, speed_verdict
from ..core.models import cache_dir, load_campplus, load_segmentation
from ..measure.cost import file_mb, package_bytes, state_dict_mb
from ..measure.environment import cpu_model
from ..measure.stats import speed_ratio
from ..measure.timing import interleaved_calls, summarize, time_call
from ..portable import coreml
from ..portable.onnx import OrtModule, export_onnx, ort_dynamic_int8
from ..portable.plain import CAMPPlusModule, PlainSegmentation
from .fusion import decode_fused, fold_campplus_batchnorm, powerset


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


def _to_half_grid(x):
    """Round float tensors (also inside tuples and lists) to the nearest float16 value, kept in float32."""
    if isinstance(x, torch.Tensor):
        return x.half().float() if x.is_floating_point() else x
    if isinstance(x, (tuple, list)):
        return type(x)(_to_half_grid(v) for v in x)
    return x


class _HalfGrid(torch.overrides.TorchFunctionMode):
    """Round the float output of every torch operation to the fp16 grid (inside the mode's own
    handler the mode is off, so the rounding itself is not intercepted)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _to_half_grid(func(*args, **(kwargs or {})))


class EmulatedHalf(nn.Module):
    """float16 arithmetic emulated in float32, for the DER runs of both models.

    Real fp16 arithmetic (``HalfPrecision``) is not vectorised on x86 CPUs without fp16 units:
    CAM++ takes seconds per 10 s window there, too slow to diarize a whole test split. This
    stand-in rounds the weights, buffers, input and the output of every torch operation (layers,
    functional calls, arithmetic: the fbank's power and log, the context-aware masking's means,
    residual sums, the pooling statistics) to the fp16 grid, while each operation computes in
    float32 (products accumulate in float32, as fp16 GPU and Neural Engine kernels do); an LSTM
    is one operation, so only its output is rounded, not its gates. How close it is to real fp16
    arithmetic is measured on the accuracy windows (``accuracy_table``: frame agreement of the
    segmentation, cosine of the embeddings, with ``HalfPrecision``'s, next to fp32's own)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                t.data = _to_half_grid(t.data)

    def forward(self, *inputs):
        with _HalfGrid():
            return self.module(*[_to_half_grid(x) for x in inputs])


def fp16_supported(module: nn.Module, *example) -> tuple[bool, str]:
    """Whether every op of ``module`` runs in float16 on this CPU (tries it on a copy)."""
    try:
        with torch.inference_mode():
            HalfPrecision(copy.deepcopy(module))(*example)
        return True, "ok"
    except Exception as e:  # noqa: BLE001 - the message is the result
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


# ---- the chapter's settings and names -----------------------------------------------------

SEG = "segmentation-3.0"
EMB = "embedding (CAM++ integrated)"  # the CoreML artifacts and the size table
EMB_SHORT = "embedding (CAM++)"  # the accuracy and CPU tables
FP16 = "fp16 arithmetic (torch)"
FP16_EMULATED = "fp16 emulated (fp16-rounded, fp32 arithmetic)"
TORCH_INT8 = "CPU int8: torch dynamic (LSTM+Linear)"
PAL8_TENSOR = "palettize 8-bit per tensor"
PAL4_GROUPED = "palettize 4-bit grouped (16 ch)"
FBANK_TOO = "int8 linear, fbank matrices compressed too"

# scored for DER on the whole test split: one scheme per guide row (fp16: its emulated stand-in,
# fast enough for a whole split; int8: the guide's 8-bit palettes) and the 4-bit grouped palettes
DER_SEG = [FP16_EMULATED, PAL8_TENSOR, PAL4_GROUPED]
DER_EMB = [FP16_EMULATED, PAL8_TENSOR, PAL4_GROUPED]
WINDOW_STEP = 5.0  # seconds between the real windows of the accuracy and speed measurements
CPU_BATCH = 8  # windows per timed call in the CPU table

SETTINGS = {
    "full": {"repeats": 5, "windows": 32, "der_seg": DER_SEG, "der_emb": DER_EMB},
    "smoke": {"repeats": 2, "windows": 8, "der_seg": DER_SEG[:1], "der_emb": DER_EMB[:1]},
}

NAN = float("nan")


def embedding_supported(choice) -> bool:
    """The embedding sections need CAM++'s module structure (the integrated CoreML wrapper)."""
    return choice.name == "campplus"


def embedding_note(choice) -> str:
    """One sentence for the page: which embedding model this chapter measures, and why not another."""
    if embedding_supported(choice):
        return (f"The embedding model is {choice.model_id}: every embedding section below runs, on its "
                "integrated CoreML form.")
    return (f"The embedding model chosen for this build is {choice.model_id}, but the embedding sections of "
            "this chapter are CAM++-specific: FluidAudio's integrated embedding model "
            "(diaropt.portable.plain.CAMPPlusModule, fbank as convolution and shape-static mask pooling), "
            "its CoreML conversion and its ONNX int8 export are built on CAM++'s module structure. Only the "
            "segmentation model is converted, compressed and measured here; embedding entries read n/a.")


@dataclass
class Reference:
    """The fp32 plain models, the real windows and their fp32 outputs (``emb`` is None when the
    embedding model is not CAM++)."""

    seg: nn.Module
    emb: nn.Module | None
    windows: torch.Tensor  # (N, 1, WINDOW_SAMPLES)
    logp: torch.Tensor  # (N, 589, 7) segmentation log-probabilities
    masks: torch.Tensor  # (N, 3, 589) decoded speaker masks
    embeddings: torch.Tensor | None  # (N, 3, 192)
    workdir: Path

    @property
    def active(self) -> torch.Tensor:
        return self.masks.sum(-1) > 0

    @property
    def example(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One window and its masks: the conversion and export example."""
        return self.windows[:1], self.masks[:1]


def reference(choice, windows: torch.Tensor, workdir: Path | None = None) -> Reference:
    """fp32 plain segmentation and (CAM++ only) the integrated embedding with BatchNorm folded —
    what coremltools does, which makes the weights comparable — and their outputs on ``windows``."""
    seg = PlainSegmentation(load_segmentation())
    emb = None
    if embedding_supported(choice):
        model = load_campplus()
        fold_campplus_batchnorm(model.campplus)
        emb = CAMPPlusModule(model, front="conv", output="speaker-embeddings")
    with torch.inference_mode():
        logp = seg(windows)
        masks = decode_fused(logp, powerset().mapping).transpose(1, 2)
        embeddings = emb(windows, masks) if emb is not None else None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="coreml-"))
    return Reference(seg, emb, windows, logp, masks, embeddings, workdir)


# ---- 1. CoreML artifacts ------------------------------------------------------------------

def fluid_model() -> Path:
    """FluidAudio's shipped segmentation ``.mlmodelc`` (from the models cache)."""
    return cache_dir() / "pyannote_segmentation.mlmodelc"


def coreml_specs(ref: Reference) -> dict:
    """{model name: (module, example inputs, input names, output name)} of what is converted."""
    x1, m1 = ref.example
    specs = {SEG: (ref.seg, (x1,), ["audio"], "log_probs")}
    if ref.emb is not None:
        specs[EMB] = (ref.emb, (x1, m1), ["audio", "masks"], "embeddings")
    return specs


def build_artifacts(ref: Reference) -> tuple[dict, pd.DataFrame]:
    """Convert each model (fp32, fp16, selective fp16), compress its fp16 program with every
    ``COMPRESSIONS`` scheme and save each ``.mlpackage``.

    Returns ({model: {variant: Artifact}}, size table indexed by (model, variant), with
    FluidAudio's shipped segmentation model as a last, reference row)."""
    artifacts, rows = {}, []
    for model_name, (module, example, names, out) in coreml_specs(ref).items():
        arts = {}
        for precision in ("fp32", "fp16", "selective-fp16"):
            ml, secs = coreml.convert(module, example, names, out, precision)
            path = ref.workdir / f"{model_name[:3]}-{precision}.mlpackage"
            arts[precision] = coreml.Artifact(precision, ml, secs, coreml.save(ml, path))
        for scheme in coreml.COMPRESSIONS:
            ml, secs = coreml.compress(arts["fp16"].model, scheme)
            path = ref.workdir / f"{model_name[:3]}-{len(arts)}.mlpackage"
            arts[scheme] = coreml.Artifact(scheme, ml, secs, coreml.save(ml, path))
        artifacts[model_name] = arts
        for name, a in arts.items():
            ops = coreml.op_histogram(a.model)
            rows.append({"model": model_name, "variant": name, "size (MB)": a.size_mb,
                         "vs fp32": a.size_mb / arts["fp32"].size_mb,
                         "ops (non-const)": sum(v for k, v in ops.items() if k != "const"),
                         "compressed-weight ops": sum(v for k, v in ops.items() if k.startswith("constexpr")),
                         "convert/compress (s)": a.seconds})
    fluid_ops = coreml.mil_text_histogram(fluid_model() / "model.mil")
    fluid_mb = package_bytes(fluid_model()) / 1e6
    rows.append({"model": SEG, "variant": "FluidAudio shipped .mlmodelc (reference)", "size (MB)": fluid_mb,
                 "vs fp32": fluid_mb / artifacts[SEG]["fp32"].size_mb,
                 "ops (non-const)": sum(v for k, v in fluid_ops.items() if k != "const"), "compressed-weight ops": 0,
                 "convert/compress (s)": NAN})
    return artifacts, pd.DataFrame(rows).set_index(["model", "variant"])


def _at(table: pd.DataFrame, key, column: str) -> float:
    """``table.loc[key, column]`` as a float, NaN when the row was not measured."""
    try:
        return float(table.loc[key, column])
    except KeyError:
        return NAN


def size_figures(sizes: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """{glue name: (value, format)} of the sizes the prose quotes (NaN for a model not converted)."""
    out = {}
    for model, key in ((SEG, "seg"), (EMB, "emb")):
        out[f"{key}_fp32_mb"] = (_at(sizes, (model, "fp32"), "size (MB)"), ".2f")
        out[f"{key}_fp16_ratio"] = (_at(sizes, (model, "fp16"), "vs fp32"), ".2f")
        out[f"{key}_int8_ratio"] = (_at(sizes, (model, PAL8_TENSOR), "vs fp32"), ".2f")
        out[f"{key}_pal4_ratio"] = (_at(sizes, (model, PAL4_GROUPED), "vs fp32"), ".2f")
    out["fluid_mb"] = (package_bytes(fluid_model()) / 1e6, ".2f")
    return out


def op_comparison(artifacts: dict) -> pd.DataFrame:
    """Operation histogram of our fp16 segmentation program next to FluidAudio's ``.mlmodelc``."""
    ops = pd.DataFrame({"ours (fp16)": pd.Series(coreml.op_histogram(artifacts[SEG]["fp16"].model)),
                        "FluidAudio .mlmodelc": pd.Series(coreml.mil_text_histogram(fluid_model() / "model.mil"))})
    return ops.fillna(0).astype(int).sort_values("ours (fp16)", ascending=False)


# ---- 2. accuracy of the compressed weights ------------------------------------------------

def seg_variants(ref: Reference, artifacts: dict):
    """(name, module) of every segmentation variant: fp16 arithmetic, its emulated stand-in,
    each compressed CoreML weight set read back into torch, and PyTorch dynamic int8."""
    yield FP16, HalfPrecision(copy.deepcopy(ref.seg))
    yield FP16_EMULATED, EmulatedHalf(copy.deepcopy(ref.seg))  # the DER runs' stand-in for fp16
    for scheme in coreml.COMPRESSIONS:
        yield scheme, coreml.compressed_weights_into_torch(ref.seg, artifacts[SEG][scheme].model)[0]
    yield TORCH_INT8, torch_dynamic_int8(copy.deepcopy(ref.seg))


def emb_variants(ref: Reference, artifacts: dict):
    """(name, module) of every embedding variant (CAM++ integrated): fp16 arithmetic, each
    compressed weight set, and int8 with the fbank matrices compressed too."""
    yield FP16, HalfPrecision(copy.deepcopy(ref.emb))
    yield FP16_EMULATED, EmulatedHalf(copy.deepcopy(ref.emb))  # the DER runs' stand-in for fp16
    for scheme in coreml.COMPRESSIONS:
        yield scheme, coreml.compressed_weights_into_torch(ref.emb, artifacts[EMB][scheme].model)[0]
    with_fbank, _ = coreml.compress(artifacts[EMB]["fp16"].model, "int8 linear (per channel)", exclude=())
    yield FBANK_TOO, coreml.compressed_weights_into_torch(ref.emb, with_fbank)[0]


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean())


def accuracy_table(ref: Reference, artifacts: dict) -> tuple[pd.DataFrame, dict, dict]:
    """Segmentation frame agreement (powerset argmax) with fp32, and embedding cosine to fp32 for
    the active speakers (fp32 masks: isolates the embedding model), on the reference windows.

    Returns (table indexed by (model, variant), {name: segmentation module}, {name: embedding module})."""
    seg_mods, emb_mods, rows = {}, {}, []
    with torch.inference_mode():
        classes = {}
        for name, mod in seg_variants(ref, artifacts):
            seg_mods[name] = mod
            classes[name] = mod(ref.windows).argmax(-1)
            row = {"model": SEG, "variant": name, "frame agreement (%)": 100 * _agree(classes[name], ref.logp.argmax(-1))}
            if name == FP16_EMULATED:  # how well the stand-in follows real fp16 arithmetic, next to fp32
                for label, out in (("", classes[name]), (" (fp32 itself)", ref.logp.argmax(-1))):
                    row[f"frame agreement with fp16 arithmetic (%){label}"] = 100 * _agree(out, classes[FP16])
            rows.append(row)
        if ref.emb is not None:
            active, outputs = ref.active, {}
            for name, mod in emb_variants(ref, artifacts):
                emb_mods[name] = mod
                outputs[name] = mod(ref.windows, ref.masks)[active]
                cos = torch.nn.functional.cosine_similarity(outputs[name], ref.embeddings[active], dim=-1)
                row = {"model": EMB_SHORT, "variant": name, "cosine to fp32 (mean)": float(cos.mean()),
                       "cosine to fp32 (min)": float(cos.min())}
                if name == FP16_EMULATED:  # how well the stand-in follows real fp16 arithmetic, next to fp32
                    for label, out in (("", outputs[name]), (" (fp32 itself)", ref.embeddings[active])):
                        row[f"cosine to fp16 arithmetic (min){label}"] = float(
                            torch.nn.functional.cosine_similarity(out, outputs[FP16], dim=-1).min())
                rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "variant"]), seg_mods, emb_mods


def block_trunk_of(mod: nn.Module) -> tuple:
    """(frames(waveforms), pool(frames, masks)) of an integrated CAM++ module
    (``CAMPPlusModule(..., output="speaker-embeddings")``, with compressed weights or inside
    ``EmulatedHalf``): the two halves the block trunk calls (``BlockTrunkDiarization.set_trunk``)."""
    emulated = isinstance(mod, EmulatedHalf)
    inner = mod.module if emulated else mod
    mode = _HalfGrid if emulated else contextlib.nullcontext

    def frames(w):
        with mode():
            return inner.campplus.frame_features(inner.features(_to_half_grid(w) if emulated else w))

    def pool(f, masks):
        with mode():
            return inner._pool_speakers(f, masks)
    return frames, pool


def der_table(embedding: str, recordings: list, ref: Reference, seg_mods: dict, emb_mods: dict, der_seg: list,
              der_emb: list, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """DER of fp32, then of each named segmentation variant, then of each named embedding variant
    (only those in ``emb_mods``: none when the embedding model is not CAM++), with the change
    in points against fp32 and its paired bootstrap 95 % CI over the files.

    The harness is ``measure.scoring.one_change_table`` (``optimized``'s block trunk in torch at
    its step and clustering) with the fp32 plain segmentation (``ref.seg``) and the fp32
    integrated embedding module (``ref.emb``) that the variants' weights were loaded into, so
    that one model differs at a time. Returns (table indexed by (changed, variant), fp32 totals)."""
    from ..measure.scoring import ModelChange, one_change_table

    trunk = block_trunk_of(ref.emb) if ref.emb is not None else None  # None: the pipeline's own model
    changes = [ModelChange("segmentation", n, segmentation=seg_mods[n].forward) for n in der_seg]
    changes += [ModelChange("embedding", n, trunk=block_trunk_of(emb_mods[n])) for n in (der_emb if emb_mods else [])]
    return one_change_table(embedding, recordings, ref.seg.forward, trunk, changes, base=("none (fp32)", "fp32"),
                            progress=progress)


# ---- 3. speed -----------------------------------------------------------------------------

def coreml_not_run() -> str:
    return (f"NOT RUN: CoreML prediction needs macOS; this build runs on {platform.system()} "
            f"({cpu_model()}). No CoreML timing is reported or estimated here.")


def coreml_timings(artifacts: dict, ref: Reference, repeats: int) -> pd.DataFrame:
    """macOS only: median ms of real ``.mlpackage`` predictions, CPU only and all compute units."""
    import coremltools as ct

    x1, m1 = ref.example
    rows = []
    for model_name, arts in artifacts.items():
        feeds = {"audio": x1.numpy()} | ({"masks": m1.numpy()} if "embedding" in model_name else {})
        for name in ("fp32", "fp16", PAL8_TENSOR, PAL4_GROUPED):
            for unit in (ct.ComputeUnit.CPU_ONLY, ct.ComputeUnit.ALL):
                mlm = ct.models.MLModel(str(arts[name].path), compute_units=unit)
                t = time_call(lambda m=mlm, f=feeds: m.predict(f), warmup=3, repeats=repeats)
                rows.append({"model": model_name, "variant": name, "compute units": unit.name,
                             "median (ms)": 1e3 * t.median})
    return pd.DataFrame(rows)


def cpu_table(ref: Reference, seg_mods: dict, emb_mods: dict, repeats: int) -> tuple[pd.DataFrame, float]:
    """ms per window of fp32, int8 and fp16 on this CPU, on a batch of ``CPU_BATCH`` real windows:
    PyTorch dynamic int8 for segmentation, ONNX Runtime fp32 and dynamic int8 (fbank matrices
    left in fp32) for the CAM++ integrated embedding (skipped for another embedding model).

    The variants run interleaved (one call of each, round after round, after one warm-up call
    each), so a load spike hits all of them; each speed-up is the median of the per-round ratios
    to torch fp32, with their range and ``measure.stats``' "unstable" flag.

    Returns (table indexed by (model, variant) with the speed-up vs torch fp32, mean cosine of
    the ONNX int8 embeddings to fp32 for the active speakers (NaN when not measured))."""
    batch, masks = ref.windows[:CPU_BATCH], ref.masks[:CPU_BATCH]
    seg8, seg16 = seg_mods[TORCH_INT8], seg_mods[FP16]
    cases = [(SEG, "torch fp32", lambda: ref.seg(batch), state_dict_mb(ref.seg)),
             (SEG, "torch dynamic int8", lambda: seg8(batch), state_dict_mb(seg8)),
             (SEG, "torch fp16 arithmetic", lambda: seg16(batch), state_dict_mb(ref.seg) / 2)]
    if ref.emb is not None:
        x1, m1 = ref.example
        onnx32 = export_onnx(ref.emb, (x1, m1), ["audio", "masks"], "embeddings", ref.workdir / "emb.onnx")
        onnx8 = ort_dynamic_int8(onnx32, ref.workdir / "emb-int8.onnx")
        ort32, ort8 = OrtModule(onnx32, ["audio", "masks"]), OrtModule(onnx8, ["audio", "masks"])
        emb16 = emb_mods[FP16]
        cases += [(EMB_SHORT, "torch fp32", lambda: ref.emb(batch, masks), state_dict_mb(ref.emb)),
                  (EMB_SHORT, "ONNX Runtime fp32", lambda: ort32(batch, masks), file_mb(onnx32)),
                  (EMB_SHORT, "ONNX Runtime dynamic int8", lambda: ort8(batch, masks), file_mb(onnx8)),
                  (EMB_SHORT, "torch fp16 arithmetic", lambda: emb16(batch, masks), state_dict_mb(ref.emb) / 2)]
    rows, cos8 = [], NAN
    rounds = max(3, repeats // 2)
    with torch.inference_mode():
        seconds = interleaved_calls([fn for _, _, fn, _ in cases], rounds)
        baseline = {m: seconds[i] for i, (m, name, _, _) in enumerate(cases) if name == "torch fp32"}
        for (model_name, name, _, size), samples in zip(cases, seconds):
            t, ratio = summarize(samples), speed_ratio(baseline[model_name], samples)
            rows.append({"model": model_name, "variant": name, "ms / window": 1e3 * t.median / len(batch),
                         "IQR (ms/window)": 1e3 * t.iqr / len(batch), "size (MB)": size,
                         "speed-up vs torch fp32": ratio.median, "range": f"{ratio.low:.2f}-{ratio.high:.2f}",
                         "unstable": ratio.unstable})
        if ref.emb is not None:
            active = ref.active[:CPU_BATCH]
            cos8 = float(torch.nn.functional.cosine_similarity(ort8(batch, masks)[active],
                                                               ref.embeddings[:CPU_BATCH][active], dim=-1).mean())
    return pd.DataFrame(rows).set_index(["model", "variant"]), cos8


def speed_figures(cpu: pd.DataFrame, cos8: float) -> dict[str, tuple[float, str]]:
    """{glue name: (value, format)} of the CPU speed-ups the prose quotes (NaN when not measured)."""
    col = "speed-up vs torch fp32"
    return {"seg_int8_speed": (_at(cpu, (SEG, "torch dynamic int8"), col), ".2f"),
            "emb_int8_speed": (_at(cpu, (EMB_SHORT, "ONNX Runtime dynamic int8"), col), ".2f"),
            "seg_fp16_speed": (_at(cpu, (SEG, "torch fp16 arithmetic"), col), ".2f"),
            "emb_fp16_speed": (_at(cpu, (EMB_SHORT, "torch fp16 arithmetic"), col), ".2f"),
            "ort_fp32_speed": (_at(cpu, (EMB_SHORT, "ONNX Runtime fp32"), col), ".2f"),
            "ort_int8_cos": (cos8, ".3f")}


# ---- verdict ------------------------------------------------------------------------------

def worst(*values: float) -> float:
    """The largest of the measured values (NaN ones, i.e. not measured, are ignored; NaN if none)."""
    measured = [v for v in values if not math.isnan(v)]
    return max(measured) if measured else NAN


def claims(sizes: pd.DataFrame, ders: pd.DataFrame, cpu: pd.DataFrame, full: bool) -> dict:
    """The guide's claims, checked: worst DER change (strict points) of fp16, 8-bit (per tensor) and
    4-bit grouped palettization over the two models, sizes and CPU speed-ups, with verdicts.

    fp16 DER covers both models in the full profile, segmentation only in the smoke profile;
    the 8-bit and 4-bit DER are full-profile measurements (NaN in the smoke profile)."""
    def delta(changed, variant):
        return _at(ders, (changed, variant), "Δ strict (pts)")

    def ci_of_worst(variant):  # the CI of the model whose change is the larger (the one judged)
        def named(m):  # the embedding's fp16 DER comes from the emulated stand-in
            return FP16_EMULATED if variant == FP16 else variant
        pairs = [(delta(m, named(m)), (_at(ders, (m, named(m)), "CI low"), _at(ders, (m, named(m)), "CI high")))
                 for m in (("segmentation", "embedding") if full else ("segmentation",))]
        pairs = [p for p in pairs if not math.isnan(p[0])]
        return max(pairs, key=lambda p: p[0])[1] if pairs else (NAN, NAN)

    def size(variant):  # the larger size ratio of the two models
        return worst(_at(sizes, (SEG, variant), "vs fp32"), _at(sizes, (EMB, variant), "vs fp32"))

    fp16_der = (worst(delta("segmentation", FP16_EMULATED), delta("embedding", FP16_EMULATED)) if full
                else delta("segmentation", FP16_EMULATED))
    int8_der = worst(delta("segmentation", PAL8_TENSOR), delta("embedding", PAL8_TENSOR)) if full else NAN
    pal4_der = worst(delta("segmentation", PAL4_GROUPED), delta("embedding", PAL4_GROUPED)) if full else NAN
    speed = "speed-up vs torch fp32"
    fp16_rows = [(SEG, "torch fp16 arithmetic"), (EMB_SHORT, "torch fp16 arithmetic")]
    int8_rows = [(SEG, "torch dynamic int8"), (EMB_SHORT, "ONNX Runtime dynamic int8")]
    fp16_speed = worst(*(_at(cpu, k, speed) for k in fp16_rows))
    int8_speed = worst(*(_at(cpu, k, speed) for k in int8_rows))
    def judged(measured, claimed, keys):
        """The guide's speed-ups are CoreML's on Apple hardware: not measurable off macOS. The CPU
        counterpart is judged beside it (an unstable ratio is shown, never judged)."""
        cpu_word = ("unstable: not judged" if any(_at(cpu, k, "unstable") == 1.0 for k in keys)
                    else speed_verdict(measured, claimed))
        where = ("CoreML timed in section 3 (macOS), not judged by this rule" if coreml.can_predict()
                 else "not measurable here (CoreML on Apple hardware; needs macOS)")
        return f"{where}; CPU counterpart: {cpu_word}"
    return {
        "fp16_der": fp16_der, "int8_der": int8_der, "pal4_der": pal4_der,
        "fp16_der_ci": ci_of_worst(FP16), "int8_der_ci": ci_of_worst(PAL8_TENSOR) if full else (NAN, NAN),
        "fp16_der_verdict": der_verdict(fp16_der, 0.5, ci_of_worst(FP16)),
        "fp16_size_verdict": "confirmed" if size("fp16") <= 0.55 else "refuted",
        "fp16_speed_verdict": judged(fp16_speed, 1.5, fp16_rows),
        "int8_der_verdict": (der_verdict(int8_der, 1.0, ci_of_worst(PAL8_TENSOR)) if full
                             else "not measured in the smoke profile"),
        "int8_size_verdict": "confirmed" if size(PAL8_TENSOR) <= 0.30 else "partly",
        "int8_speed_verdict": judged(int8_speed, 2.0, int8_rows),
    }


def summary(choice, sizes: pd.DataFrame, cpu: pd.DataFrame, verdict: dict) -> dict:
    """The figures the summary chapter quotes (``quantization-summary-<profile>.json``); NaN for
    the embedding entries when the embedding model is not CAM++."""
    speed = "speed-up vs torch fp32"
    return {
        "embedding": choice.model_id, "embedding_name": choice.name, "embedding_measured": embedding_supported(choice),
        "size_fp16": {"segmentation": _at(sizes, (SEG, "fp16"), "vs fp32"), "embedding": _at(sizes, (EMB, "fp16"), "vs fp32")},
        "size_int8": {"segmentation": _at(sizes, (SEG, PAL8_TENSOR), "vs fp32"),
                      "embedding": _at(sizes, (EMB, PAL8_TENSOR), "vs fp32")},
        "speed_fp16": {"segmentation": _at(cpu, (SEG, "torch fp16 arithmetic"), speed),
                       "embedding": _at(cpu, (EMB_SHORT, "torch fp16 arithmetic"), speed)},
        "speed_int8": {"segmentation": _at(cpu, (SEG, "torch dynamic int8"), speed),
                       "embedding": _at(cpu, (EMB_SHORT, "ONNX Runtime dynamic int8"), speed)},
        "der_fp16_points": verdict["fp16_der"], "der_int8_points": verdict["int8_der"],
        "der_fp16_ci": list(verdict["fp16_der_ci"]), "der_int8_ci": list(verdict["int8_der_ci"]),
        "der_4bit_points": verdict["pal4_der"]}
