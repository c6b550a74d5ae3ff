"""The reference diarization pipeline and the registry of variants.

The reference is pyannote.audio 4.0.7's ``SpeakerDiarization`` with the real segmentation-3.0,
the chosen embedding model (CAM++ or WeSpeaker ResNet34), 3.1-style agglomerative clustering
and the frozen hyper-parameters of ``configs/reference.yaml``. It runs fully offline on
in-memory waveforms.

A *variant* is any callable ``Recording -> Annotation`` registered with ``@register``; each one
reports its per-stage wall time. Chapters add variants; the CLI benchmarks any of them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from pyannote.core import Annotation

from .audio import as_pyannote_input
from .data import REPO_ROOT, Recording
from .models import EmbeddingChoice, choose_embedding, load_segmentation

CONFIG = REPO_ROOT / "configs" / "reference.yaml"


def reference_params(embedding: str, config: Path = CONFIG) -> dict:
    """Frozen pipeline parameters for an embedding model (``campplus`` or ``resnet34``)."""
    block = yaml.safe_load(Path(config).read_text())[embedding]
    return {"segmentation": dict(block["segmentation"]), "clustering": dict(block["clustering"])}


def _unused_plda():
    """pyannote 4's constructor insists on a PLDA even for agglomerative clustering, which never
    uses it. An uninitialised instance satisfies the type check; any use would raise."""
    from pyannote.audio.core.plda import PLDA

    return object.__new__(PLDA)


def build_reference_pipeline(embedding: EmbeddingChoice | str = "auto", params: dict | None = None,
                             segmentation_batch_size: int = 32, embedding_batch_size: int = 32,
                             segmentation_step: float = 0.1):
    """Instantiate pyannote's SpeakerDiarization offline (3.1 batch sizes and window step by
    default; ``segmentation_step`` is the step as a fraction of the 10 s window)."""
    from pyannote.audio.pipelines import SpeakerDiarization

    choice = choose_embedding(embedding) if isinstance(embedding, str) else embedding
    pipe = SpeakerDiarization(
        segmentation=load_segmentation(),
        embedding=choice.model,
        embedding_exclude_overlap=True,
        segmentation_step=segmentation_step,
        plda=_unused_plda(),
        clustering="AgglomerativeClustering",
        segmentation_batch_size=segmentation_batch_size,
        embedding_batch_size=embedding_batch_size,
    )
    pipe.instantiate(params or reference_params(choice.name))
    pipe.embedding_choice = choice
    return pipe


class StageClock:
    """pyannote hook that timestamps the last call of each step."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.last: dict[str, float] = {}

    def __call__(self, step, artifact=None, file=None, total=None, completed=None):
        self.last[step] = time.perf_counter()

    def stages(self, end: float) -> dict:
        seg = self.last.get("segmentation", end)
        cnt = self.last.get("speaker_counting", seg)
        emb = self.last.get("embeddings", cnt)
        return {"segmentation": seg - self.t0, "counting": cnt - seg, "embedding": emb - cnt,
                "clustering": end - emb, "total": end - self.t0}


@dataclass
class Variant:
    """A named pipeline: ``run(recording) -> (hypothesis, stage seconds)``."""

    name: str
    description: str
    run: Callable[[Recording], tuple[Annotation, dict]]
    models: dict = field(default_factory=dict)


VARIANTS: dict[str, Callable[..., Variant]] = {}


def register(name: str):
    def deco(factory):
        VARIANTS[name] = factory
        return factory
    return deco


def get_variant(name: str, **kwargs) -> Variant:
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name](**kwargs)


def run_pyannote(pipe, rec: Recording) -> tuple[Annotation, dict]:
    clock = StageClock()
    out = pipe(as_pyannote_input(rec.waveform, rec.uri), hook=clock)
    end = time.perf_counter()
    hyp = out.speaker_diarization if hasattr(out, "speaker_diarization") else out
    return hyp, clock.stages(end)


def models_record(choice: EmbeddingChoice) -> dict:
    """Which models produced a result (stored with every benchmark)."""
    return {"segmentation": "pyannote/segmentation-3.0", "embedding": choice.model_id,
            "embedding_name": choice.name, "embedding_reason": choice.reason}


@register("reference")
def reference_variant(embedding: str = "auto") -> Variant:
    pipe = build_reference_pipeline(embedding)
    choice = pipe.embedding_choice
    return Variant(
        "reference",
        "pyannote.audio 4.0.7 SpeakerDiarization (3.1-style agglomerative clustering), "
        f"segmentation-3.0 + {choice.name}, frozen configs/reference.yaml",
        lambda rec: run_pyannote(pipe, rec),
        models=models_record(choice),
    )


# Variants defined by technique modules register themselves on import.
from .techniques import optimized, shared_trunk  # noqa: E402,F401


@register("streaming")
def streaming_variant(embedding: str = "auto", step: float | None = None, latency: float | None = None,
                      threshold: float | None = None) -> Variant:
    """The online diarizer (``diaropt.streaming``) fed in pieces of ``step`` seconds."""
    from .streaming import build_streaming_variant

    return build_streaming_variant(embedding, step, latency, threshold)
