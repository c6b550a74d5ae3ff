"""Chapter 01, operation fusion: the guide's fused post-processing, checked and measured.

The guide claims that fusing segmentation-3.0's post-processing (reshape -> softmax -> argmax ->
one-hot -> powerset mapping) into one JIT-compiled function gives 1.2x speed at no cost in size
or DER. Its snippet does not run (``guide_snippet``: ``@torch.jit.script_method`` belongs to
``torch.jit.ScriptModule`` only). This module checks fusion at three levels, each time proving
the fused code equal to the reference before timing it:

1. **Powerset decode** (the guide's snippet): reshape -> softmax -> argmax -> one-hot -> matmul
   with the 7x3 mapping. Softmax is monotonic, so argmax of the log-probabilities already gives
   the class; one-hot + matmul is a row lookup. ``decode_fused`` = ``mapping[argmax]``;
   ``decode_table`` times the three decoders against one model call (Amdahl's ceiling:
   ``decode_ceiling``).
2. **Model-level** (``model_fusion_tables``): SincNet filters baked (``diaropt.portable.plain``),
   BatchNorm folded into the preceding convolution (``fold_campplus_batchnorm``, torch's
   ``fuse_conv_bn_eval``; CAM++ only, it walks CAM++'s modules), TorchScript freeze,
   ``torch.compile``.
3. **Shared embedding trunk** (``diaropt.pipelines.trunks``; ``trunk_runs`` / ``trunk_table``):
   the trunk once per chunk instead of once per (chunk, speaker), silent speakers skipped.

Every speed-up is the median of interleaved rounds (``measure.timing.interleaved_ratios`` for
the models and decoders, ``measure.benchmark.interleaved_speed`` end to end) with its range;
a ratio too spread to judge is shown, not judged (``book.verdicts.ratio_verdict``).
"""
from __future__ import annotations

import time

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..measure.stats import Ratio
from ..measure.timing import interleaved_ratios
from ..portable.plain import CAMPPlusModule, PlainSegmentation

SETTINGS = {
    # repeats: timed calls per model variant (decoders: 10x as many); trunk_files: realistic test
    # files for the shared-trunk runs; compile: whether torch.compile (minutes of compilation) is measured
    # speed_files / speed_repeats: the end-to-end speed-ups judged are medians of interleaved rounds
    # (reference, shared-trunk, shared-trunk-skip) over the first speed_files realistic test files
    "full": {"repeats": 10, "trunk_files": 3, "compile": True, "speed_files": 1, "speed_repeats": 3},
    "smoke": {"repeats": 3, "trunk_files": 1, "compile": False, "speed_files": 1, "speed_repeats": 3},
}

TRUNK_VARIANTS = ("reference", "shared-trunk", "shared-trunk-skip")


def powerset():
    """pyannote's own powerset converter for segmentation-3.0 (3 speakers, at most 2 at once)."""
    from pyannote.audio.utils.powerset import Powerset

    return Powerset(3, 2)


def decode_pyannote(log_probs: torch.Tensor) -> torch.Tensor:
    """Reference: pyannote's ``Powerset.to_multilabel`` (hard)."""
    return powerset().to_multilabel(log_probs)


def decode_guide(log_probs: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """The guide's chain, made to run: any batch size instead of ``view(1, 589, 7)``."""
    probs = F.softmax(log_probs, dim=-1)
    indices = torch.argmax(probs, dim=-1)
    one_hot = F.one_hot(indices, mapping.shape[0]).float()
    return torch.matmul(one_hot, mapping)


def guide_snippet(segmentation, window: torch.Tensor) -> str:
    """Define and run the guide's ``FusedSegmentationWrapper`` as written; "ran" or the error.

    The class body is the guide's code verbatim, fixed shapes (1, 589, 7) included."""
    try:
        class FusedSegmentationWrapper(nn.Module):
            def __init__(self, base_model):
                super().__init__()
                self.base = base_model

            @torch.jit.script_method
            def fused_postprocess(self, segments_flat: torch.Tensor) -> torch.Tensor:
                segments_3d = segments_flat.view(1, 589, 7)
                probs = F.softmax(segments_3d, dim=-1)
                indices = torch.argmax(probs, dim=-1)
                one_hot = F.one_hot(indices, 7).float()
                masks = torch.matmul(one_hot.view(-1, 7), self.powerset_mapping)
                return masks.view(1, 589, 3)

            def forward(self, audio):
                return self.fused_postprocess(self.base(audio))

        FusedSegmentationWrapper(segmentation)(window)
        return "ran"
    except Exception as e:  # noqa: BLE001 - the failure is the measurement
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def decode_fused(log_probs: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """argmax + row lookup: no softmax, no one-hot, no matmul."""
    return mapping[log_probs.argmax(dim=-1)]


class FusedSegmentation(nn.Module):
    """segmentation-3.0 with the powerset decode inside: waveform -> (B, 589, 3) binary masks.

    The guide decorates a method of a plain ``nn.Module`` with ``@torch.jit.script_method``,
    which only exists on ``torch.jit.ScriptModule``; here the whole module is scriptable/traceable.
    """

    def __init__(self, pyannote_model):
        super().__init__()
        self.base = PlainSegmentation(pyannote_model)
        self.register_buffer("mapping", powerset().mapping.clone())

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return decode_fused(self.base(waveforms), self.mapping)


def _fold(conv: nn.Conv1d | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    if not bn.affine:  # fuse_conv_bn_eval needs weight/bias: use the identity affine
        bn = _with_identity_affine(bn)
    return fuse_conv_bn_eval(conv, bn)


def _with_identity_affine(bn):
    new = type(bn)(bn.num_features, eps=bn.eps, affine=True)
    new.running_mean.copy_(bn.running_mean)
    new.running_var.copy_(bn.running_var)
    return new.eval()


def fold_campplus_batchnorm(campplus) -> int:
    """Fold every BatchNorm that directly follows a convolution into it (in place, eval mode).

    Pre-activation BatchNorms (BN -> ReLU -> conv) cannot be folded and are left alone.
    Returns the number of folded pairs.
    """
    from ..core.campplus import FCM, BasicResBlock, CAMDenseTDNNLayer, TDNNLayer

    campplus.eval()
    folded = 0
    for module in campplus.modules():
        pairs = []
        if isinstance(module, FCM):
            pairs = [("conv1", "bn1"), ("conv2", "bn2")]
        elif isinstance(module, BasicResBlock):
            pairs = [("conv1", "bn1"), ("conv2", "bn2")]
            if len(module.shortcut):
                module.shortcut = nn.Sequential(_fold(module.shortcut[0], module.shortcut[1]))
                folded += 1
        for conv_name, bn_name in pairs:
            setattr(module, conv_name, _fold(getattr(module, conv_name), getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
            folded += 1
        if isinstance(module, TDNNLayer):
            module.linear = _fold(module.linear, module.nonlinear.batchnorm)
            module.nonlinear.batchnorm = nn.Identity()
            folded += 1
        if isinstance(module, CAMDenseTDNNLayer):
            module.linear1 = _fold(module.linear1, module.nonlinear2.batchnorm)
            module.nonlinear2.batchnorm = nn.Identity()
            folded += 1
    # the last transition's conv feeds only the output BatchNorm
    last = campplus.xvector.transit3
    last.linear = _fold(last.linear, campplus.xvector.out_nonlinear.batchnorm)
    campplus.xvector.out_nonlinear.batchnorm = nn.Identity()
    dense = campplus.dense
    dense.linear = _fold(dense.linear, dense.nonlinear.batchnorm)
    dense.nonlinear.batchnorm = nn.Identity()
    return folded + 2


def freeze_torchscript(module: nn.Module, example: torch.Tensor, optimize: bool = False):
    """Trace, freeze (constant-folds weights, folds conv+BN) and optionally
    ``optimize_for_inference`` (oneDNN layouts)."""
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        return torch.jit.optimize_for_inference(frozen) if optimize else frozen


# --------------------------------------------------------------------------------------------
# measurements


def decode_table(segmentation, window: torch.Tensor, repeats: int) -> pd.DataFrame:
    """Check the three decoders equal on one window and on 32 noisy copies, then time them
    interleaved with one segmentation call (``measure.timing.interleaved_ratios``, ``repeats // 2``
    rounds, at least 3, quick calls looped): µs per call (medians) and each decoder's share of the model
    call, the median of the per-round shares with their range."""
    mapping = powerset().mapping
    with torch.inference_mode():
        batch32 = segmentation(window.repeat(32, 1, 1) + 1e-3 * torch.randn(32, *window.shape[1:]))
        one = segmentation(window)
    for logp in (one, batch32):
        ref = decode_pyannote(logp)
        assert torch.equal(decode_guide(logp, mapping), ref)
        assert torch.equal(decode_fused(logp, mapping), ref)

    def decoders(logp):
        return {"pyannote Powerset": lambda: decode_pyannote(logp),
                "guide chain (fixed)": lambda: decode_guide(logp, mapping),
                "fused lookup": lambda: decode_fused(logp, mapping)}

    rounds = max(3, repeats // 2)
    with torch.inference_mode():
        t1, r1 = interleaved_ratios({"model call": lambda: segmentation(window)} | decoders(one), rounds=rounds)
        t32, _ = interleaved_ratios(decoders(batch32), rounds=rounds)
    names = list(t32)
    decode = pd.DataFrame({"1 window (µs)": {n: 1e6 * t1[n].median for n in names},
                           "32 windows (µs)": {n: 1e6 * t32[n].median for n in names}})
    # model seconds / decoder seconds per round: its inverse is the decoder's share of a model call
    decode["share of one model call (%)"] = [100 / r1[n].median for n in names]
    decode["share low (%)"] = [100 / r1[n].high for n in names]
    decode["share high (%)"] = [100 / r1[n].low for n in names]
    decode["rounds"] = [r1[n].repeats for n in names]
    return decode


def decode_ceiling(decode: pd.DataFrame, name: str = "guide chain (fixed)") -> Ratio:
    """Amdahl's ceiling on the model call's speed-up if ``name``'s decode cost nothing:
    1 / (1 - share), as a ``measure.stats.Ratio`` over the range of its per-round shares."""
    row = decode.loc[name]

    def ceiling(column):
        return 1 / (1 - float(row[column]) / 100)
    return Ratio(ceiling("share of one model call (%)"), ceiling("share low (%)"), ceiling("share high (%)"),
                 int(row["rounds"]))


def variant_rows(variants: dict, window: torch.Tensor, reference: torch.Tensor, repeats: int) -> list[dict]:
    """Latency of each ``{name: (fn, prepare seconds or None)}`` on ``window``, timed interleaved
    (``measure.timing.interleaved_ratios``, ``repeats // 2`` rounds, at least 3): median and IQR ms,
    the speed-up over the first variant (median of per-round ratios, range, unstable flag), and
    the largest absolute difference of its output from ``reference``."""
    with torch.inference_mode():
        errors = {n: float((fn(window) - reference).abs().max()) for n, (fn, _) in variants.items()}
        timings, ratios = interleaved_ratios({n: (lambda fn=fn: fn(window)) for n, (fn, _) in variants.items()},
                                             rounds=max(3, repeats // 2))
    return [{"variant": n, "median (ms)": 1e3 * timings[n].median, "IQR (ms)": 1e3 * timings[n].iqr,
             "max |error|": errors[n], "compile/prepare (s)": prep, "speed-up vs eager": ratios[n].median,
             "speed-up low": ratios[n].low, "speed-up high": ratios[n].high, "rounds": ratios[n].repeats,
             "unstable": ratios[n].unstable}
            for n, (_, prep) in variants.items()]


def timed_prepare(make):
    """``(make(), seconds it took)``."""
    t0 = time.perf_counter()
    fn = make()
    return fn, time.perf_counter() - t0


def compiled(module: nn.Module, window: torch.Tensor):
    """``torch.compile`` (Inductor, static shapes), compiled by a first call on ``window``."""
    fn = torch.compile(module, mode="default", dynamic=False)
    with torch.inference_mode():
        fn(window)  # compilation happens on the first call
    return fn


def embedding_fusion_scope(choice, compile_models: bool) -> str:
    """What the embedding table measures for this embedding model (the chapter's prose shows it)."""
    if choice.name == "campplus":
        extra = ", and `torch.compile`" if compile_models else "; `torch.compile` in the full profile only"
        return f"BatchNorm folding and the folded model frozen with TorchScript{extra}"
    return (f"the eager {choice.name} model only: BatchNorm folding walks CAM++'s own module structure "
            "(FCM head, TDNN and CAM dense layers), so it and the rows built on it are measured for CAM++ only")


def model_fusion_tables(segmentation, choice, window: torch.Tensor, repeats: int,
                        compile_models: bool) -> tuple[dict[str, pd.DataFrame], int | None]:
    """Latency and error of each model-level fusion, one table per model
    (``{"segmentation-3.0": ..., "embedding (<name>)": ...}``) with the speed-up vs eager, and
    the number of folded conv+BN pairs (None when the embedding is not CAM++)."""
    from ..core.models import load_campplus

    embedding = choice.model
    n_folded = None
    with torch.inference_mode():
        seg_ref = segmentation(window)
        emb_ref = embedding(window)
    plain = PlainSegmentation(segmentation)
    seg = {"pyannote eager (reference)": (segmentation, None), "baked SincNet (plain module)": (plain, None),
           "TorchScript frozen": timed_prepare(lambda: freeze_torchscript(plain, window)),
           "TorchScript frozen + optimize_for_inference": timed_prepare(lambda: freeze_torchscript(plain, window,
                                                                                                   optimize=True))}
    emb = {f"{choice.name} eager (reference)": (embedding, None)}
    if choice.name == "campplus":
        folded = load_campplus()
        n_folded = fold_campplus_batchnorm(folded.campplus)
        emb[f"BatchNorm folded ({n_folded} pairs)"] = (folded, None)
        emb["folded + TorchScript frozen"] = timed_prepare(lambda: freeze_torchscript(CAMPPlusModule(folded), window))
    if compile_models:
        seg["torch.compile (plain module)"] = timed_prepare(lambda: compiled(PlainSegmentation(segmentation), window))
        if choice.name == "campplus":
            emb["torch.compile"] = timed_prepare(lambda: compiled(CAMPPlusModule(load_campplus()), window))

    tables = {}
    for label, variants, ref in (("segmentation-3.0", seg, seg_ref), (f"embedding ({choice.name})", emb, emb_ref)):
        tables[label] = pd.DataFrame(variant_rows(variants, window, ref, repeats)).set_index("variant")
    return tables, n_folded


def best_speedup(table: pd.DataFrame) -> float:
    """The largest speed-up over eager among the fused rows (NaN when there are none)."""
    rows = table["speed-up vs eager"].iloc[1:]
    return float(rows.max()) if len(rows) else float("nan")


def fused_ratios(tables: dict[str, pd.DataFrame]) -> list[Ratio]:
    """Every fused row's speed-up over eager, in every table (the candidates of the model-level
    verdict: ``book.verdicts.ratios_verdict`` with ``best=True``)."""
    return [Ratio.from_columns(r, "speed-up vs eager")
            for t in tables.values() for _, r in t.iloc[1:].iterrows()]


def best_ratio(table: pd.DataFrame) -> Ratio | None:
    """The fused row with the largest median speed-up over eager, as a ``measure.stats.Ratio``
    (None when the table has no fused row)."""
    if len(table) < 2:
        return None
    row = table.loc[table["speed-up vs eager"].iloc[1:].idxmax()]
    return Ratio.from_columns(row, "speed-up vs eager")


def show(df: pd.DataFrame) -> pd.DataFrame:
    """Round timings; keep errors in scientific notation (float32 rounding is ~1e-6)."""
    out = df.round(4)
    out["max |error|"] = df["max |error|"].map("{:.1e}".format)
    return out


def trunk_runs(recordings: list, profile: str, embedding: str, variants=TRUNK_VARIANTS,
               reuse: dict[str, dict] | None = None) -> dict[str, dict]:
    """``run_benchmark`` of each variant on the same recordings, in this order. A variant with a
    result in ``reuse`` (chapter 00's runs, ``book.results.baseline_reference``: the reference on
    its timed files and ``shared-trunk-skip``, the exact harness that scored it, on the whole
    split; both in that chapter's process) is not run again: its rows for these files are taken
    (``measure.benchmark.subset_result``)."""
    from ..measure.benchmark import run_benchmark, subset_result

    reuse = reuse or {}
    out = {}
    for name in variants:
        if name in reuse:
            out[name] = subset_result(reuse[name], [r.uri for r in recordings])
        else:
            out[name] = run_benchmark(name, recordings=recordings, profile=profile, embedding=embedding)
    return out


def trunk_table(runs: dict[str, dict]) -> pd.DataFrame:
    """Embedding-stage and end-to-end time, speed-ups over the first run (the reference) and DER."""
    ref_t = next(iter(runs.values()))["totals"]
    rows = []
    for name, r in runs.items():
        t = r["totals"]
        rows.append({"variant": name, "embedding stage (s)": t["stage_seconds"]["embedding"],
                     "total (s)": t["wall_seconds"], "RTFx": t["rtfx"],
                     "embedding speed-up": ref_t["stage_seconds"]["embedding"] / t["stage_seconds"]["embedding"],
                     "end-to-end speed-up": ref_t["wall_seconds"] / t["wall_seconds"],
                     "DER strict (%)": 100 * t["der_strict"], "DER FluidAudio (%)": 100 * t["der_fluidaudio"]})
    return pd.DataFrame(rows).set_index("variant")
