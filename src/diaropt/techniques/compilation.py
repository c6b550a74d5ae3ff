"""Chapter 04, CoreML compilation: the guide's pass pipeline and save mode against coremltools 9.

**The guide's claim.** "Enable all optimizations during conversion" by passing
``ct.PassPipeline([...])`` with six pass names to ``ct.convert`` (constant and dead-code
elimination, loop-invariant elimination, pad+conv fusion, palettization and pruning), then save
with ``SaveMode.MEMORY_MAPPED`` "for faster loading". It claims no numbers.

**What coremltools 9 actually does.**

- All six names are registered graph passes (``pass_names_table``), and the four ``common::``
  ones already run in ``PassPipeline.DEFAULT``.
- ``ct.PassPipeline(list)`` does not *add* passes: it **replaces** the whole default pipeline
  with the list, dropping every other optimization (conv+BatchNorm fusion, activation fusion,
  redundant-op removal, ...). ``pipelines_table`` converts both real models with DEFAULT,
  CLEANUP, EMPTY and the guide's six passes and compares operation count, size on disk and
  conversion time; a conversion that fails is recorded with its error, since the failure is the
  measurement. The ``compression::`` passes take their configuration through
  ``PassPipeline.set_options``, which the snippet never calls; compressing after conversion
  with ``coremltools.optimize.coreml`` (chapter 03) is the route the book measures.
- There is no ``MLModel.SaveMode`` and ``MLModel.save`` takes only a path (``save_mode_probe``):
  an ``.mlpackage`` already keeps its weights in a separate ``weight.bin``, and how Core ML
  maps it is the runtime's decision on the device.

CoreML load and prediction need macOS and are not measured on Linux. The embedding model is
converted in FluidAudio's integrated form (``CAMPPlusModule(front="conv",
output="speaker-embeddings")``), which exists for CAM++ only: with another embedding model only
segmentation is converted (``embedding_note`` says why).
"""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ..core.constants import LOCAL_SPEAKERS, SEGMENTATION_FRAMES
from ..measure.cost import package_bytes

SETTINGS = {"full": {}, "smoke": {}}  # the same conversions in both profiles

GUIDE_PASSES = ["common::const_elimination", "common::dead_code_elimination", "common::loop_invariant_elimination",
                "common::fuse_pad_conv", "compression::palettize_weights", "compression::prune_weights"]
SEGMENTATION = "segmentation-3.0"
EMBEDDING = "embedding (CAM++ integrated)"


def pipelines() -> dict[str, Callable]:
    """Name -> factory of each pass pipeline compared (a factory may raise: that is recorded)."""
    import coremltools as ct

    return {"DEFAULT": lambda: ct.PassPipeline.DEFAULT, "CLEANUP": lambda: ct.PassPipeline.CLEANUP,
            "EMPTY": lambda: ct.PassPipeline.EMPTY, "guide's six passes": lambda: ct.PassPipeline(GUIDE_PASSES)}


def pass_names_table() -> pd.DataFrame:
    """For each of the guide's pass names: registered in coremltools, and already in DEFAULT."""
    import coremltools as ct
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

    default = ct.PassPipeline.DEFAULT
    return pd.DataFrame({"registered in coremltools": [p in PASS_REGISTRY for p in GUIDE_PASSES],
                         "in the DEFAULT pipeline": [p in default.passes for p in GUIDE_PASSES]}, index=GUIDE_PASSES)


def embedding_note(choice) -> str:
    """Why the embedding model is, or is not, converted in this chapter."""
    if choice.name == "campplus":
        return "CAM++ is converted in FluidAudio's integrated form (waveform and speaker masks in, embeddings out)"
    return (f"the embedding model here is {choice.name}; the integrated, convertible embedding "
            "(`CAMPPlusModule`, with a convolutional fbank) exists for CAM++ only, so only segmentation is converted")


def conversion_specs(segmentation, choice, window: torch.Tensor) -> dict[str, tuple]:
    """``{name: (module, example inputs, input names)}``: the plain segmentation model, and CAM++
    in its integrated form when it is the chosen embedding (BatchNorms left in: folding is the
    converter's job here)."""
    from ..core.models import load_campplus
    from ..portable.plain import CAMPPlusModule, PlainSegmentation

    specs = {SEGMENTATION: (PlainSegmentation(segmentation), (window,), ["audio"])}
    if choice.name == "campplus":
        emb = CAMPPlusModule(load_campplus(), front="conv", output="speaker-embeddings")
        masks = torch.ones(1, LOCAL_SPEAKERS, SEGMENTATION_FRAMES)
        specs[EMBEDDING] = (emb, (window, masks), ["audio", "masks"])
    return specs


def trace_all(specs: dict[str, tuple]) -> dict:
    """Each module traced once on its example inputs (every pipeline converts the same trace)."""
    return {name: torch.jit.trace(mod.eval(), ex, check_trace=False) for name, (mod, ex, _) in specs.items()}


def convert_with(traced, example: tuple, input_names: list[str], pipeline, path: Path) -> dict:
    """Convert a traced model to an fp16 ML program (macOS 15 target) with ``pipeline`` and save it
    to ``path``: status, non-const and const operation counts, size on disk and conversion time."""
    import coremltools as ct

    from ..portable.coreml import op_histogram, save

    t0 = time.perf_counter()
    try:
        ml = ct.convert(traced, inputs=[ct.TensorType(name=n, shape=tuple(x.shape)) for n, x in zip(input_names, example)],
                        convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                        minimum_deployment_target=ct.target.macOS15, pass_pipeline=pipeline)
    except Exception as e:  # noqa: BLE001 - the failure is the measurement
        return {"status": f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"}
    secs = time.perf_counter() - t0
    path = save(ml, path)
    ops = op_histogram(ml)
    return {"status": "ok", "ops (non-const)": sum(v for k, v in ops.items() if k != "const"),
            "const": ops.get("const", 0), "size (MB)": package_bytes(path) / 1e6, "convert (s)": secs}


def pipelines_table(specs: dict[str, tuple], traced: dict, workdir: Path) -> pd.DataFrame:
    """Every model converted with every pipeline of ``pipelines()``, indexed by (model, pipeline)."""
    workdir = Path(workdir)
    rows = []
    for model_name, (_, example, inputs) in specs.items():
        for pname, make in pipelines().items():
            try:
                pipeline = make()
            except Exception as e:  # noqa: BLE001
                rows.append({"model": model_name, "pipeline": pname, "status": f"{type(e).__name__}: {e}"[:100]})
                continue
            path = workdir / f"{model_name[:3]}-{len(list(workdir.iterdir()))}.mlpackage"
            rows.append({"model": model_name, "pipeline": pname}
                        | convert_with(traced[model_name], example, inputs, pipeline, path))
    return pd.DataFrame(rows).set_index(["model", "pipeline"])


def pipeline_summary(passes: pd.DataFrame, model_name: str, missing: str = "not converted") -> dict:
    """What the prose quotes for one model: DEFAULT's operation count, and the guide pipeline's
    status and operation count ("n/a" where it did not convert, ``missing`` for a model not in
    the table)."""
    if model_name not in passes.index.get_level_values("model"):
        return {"default_ops": "n/a", "guide_status": missing, "guide_ops": "n/a"}
    guide = passes.loc[(model_name, "guide's six passes")]
    return {"default_ops": passes.loc[(model_name, "DEFAULT"), "ops (non-const)"], "guide_status": guide["status"],
            "guide_ops": guide["ops (non-const)"] if guide["status"] == "ok" else "n/a"}


def save_mode_probe() -> dict[str, str]:
    """Whether ``MLModel.SaveMode.MEMORY_MAPPED`` exists, and the signature of ``MLModel.save``."""
    import coremltools as ct

    try:
        save_mode = f"exists: {ct.models.MLModel.SaveMode.MEMORY_MAPPED}"
    except AttributeError as e:
        save_mode = f"AttributeError: {e}"
    return {"SaveMode.MEMORY_MAPPED": save_mode, "MLModel.save": str(inspect.signature(ct.models.MLModel.save))}
