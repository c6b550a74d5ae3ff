"""The reference diarization pipeline: pyannote.audio as it is.

The reference is pyannote.audio 4.0.7's ``SpeakerDiarization`` with the real segmentation-3.0,
the chosen embedding model (CAM++ or WeSpeaker ResNet34), 3.1-style agglomerative clustering
and the frozen hyper-parameters of ``configs/reference.yaml``. It runs fully offline on
in-memory waveforms; ``run_pyannote`` times each stage through pyannote's hooks. Every other
pipeline in ``diaropt.pipelines`` is measured against it.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch
from pyannote.core import Annotation

from ..core.audio import FileSource, as_pyannote_input
from ..core.config import reference_params
from ..core.data import Recording
from ..core.errors import OptionError
from ..core.models import EmbeddingChoice, choose_embedding, load_segmentation
from . import progress
from .registry import Variant


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
    set_known_min_samples(pipe)
    return pipe


def set_known_min_samples(pipe) -> None:
    """Give a pipeline's embedding wrapper its model's known shortest input (``MIN_NUM_SAMPLES``,
    e.g. CAM++'s) instead of pyannote's bisection, which runs the model on random inputs on
    first use (a ``cached_property``: this fills its cache). Models without it keep the search."""
    known = getattr(pipe._embedding.model_, "MIN_NUM_SAMPLES", None)
    if known is not None:
        pipe._embedding.__dict__["min_num_samples"] = known


class StageClock:
    """pyannote hook that timestamps the last call of each step, and passes every call on to
    ``forward`` (a ``pipelines.progress.Progress``, or None)."""

    def __init__(self, forward=None):
        self.t0 = time.perf_counter()
        self.last: dict[str, float] = {}
        self.forward = forward

    def __call__(self, step, artifact=None, file=None, total=None, completed=None):
        self.last[step] = time.perf_counter()
        if self.forward is not None:
            self.forward(step, artifact, file=file, total=total, completed=completed)

    def stages(self, end: float) -> dict:
        seg = self.last.get("segmentation", end)
        cnt = self.last.get("speaker_counting", seg)
        emb = self.last.get("embeddings", cnt)
        return {"segmentation": seg - self.t0, "counting": cnt - seg, "embedding": emb - cnt,
                "clustering": end - emb, "total": end - self.t0}


def run_pyannote(pipe, rec: Recording, **speaker_counts) -> tuple[Annotation, dict]:
    """Diarize one recording, timing each stage; ``speaker_counts`` (``num_speakers``,
    ``min_speakers``, ``max_speakers``) go to pyannote's call as given, none by default. Progress
    goes to the hook of the enclosing ``pipelines.progress.reporting`` block, if any."""
    clock = StageClock(progress.current())
    if not isinstance(rec.waveform, FileSource):
        out = pipe(as_pyannote_input(rec.waveform, rec.uri), hook=clock, **speaker_counts)
    elif getattr(pipe, "reads_blocks", False):  # the file stays on disk (pipelines.bounded)
        from pyannote.audio.utils.reproducibility import fix_reproducibility

        fix_reproducibility(getattr(pipe, "device", torch.device("cpu")))  # as pyannote's __call__ does
        out = pipe.apply({"uri": rec.uri, pipe.SOURCE: rec.waveform}, hook=clock, **speaker_counts)
    else:
        out = pipe(as_pyannote_input(rec.waveform.load(), rec.uri), hook=clock, **speaker_counts)
    end = time.perf_counter()
    hyp = out.speaker_diarization if hasattr(out, "speaker_diarization") else out
    return hyp, clock.stages(end)


def models_record(choice: EmbeddingChoice) -> dict:
    """Which models produced a result (stored with every benchmark)."""
    return {"segmentation": "pyannote/segmentation-3.0", "embedding": choice.model_id,
            "embedding_name": choice.name, "embedding_reason": choice.reason}


def reference_variant(embedding: str = "auto") -> Variant:
    pipe = build_reference_pipeline(embedding)
    choice = pipe.embedding_choice
    return Variant(
        "reference",
        "pyannote.audio 4.0.7 SpeakerDiarization (3.1-style agglomerative clustering), "
        f"segmentation-3.0 + {choice.name}, frozen configs/reference.yaml",
        lambda rec: run_pyannote(pipe, rec),
        models=models_record(choice),
        pipeline=pipe,
    )


def pipeline_variant(name: str, pipe, description: str = "") -> Variant:
    """A built pyannote pipeline as a ``Variant`` (its embedding model recorded)."""
    return Variant(name, description, lambda rec: run_pyannote(pipe, rec), models=models_record(pipe.embedding_choice),
                   pipeline=pipe)


def with_speaker_counts(variant: Variant, counts: dict) -> Variant:
    """The variant with ``num_speakers`` / ``min_speakers`` / ``max_speakers`` passed to every
    pyannote call (the same variant when ``counts`` is empty: today's output, unchanged)."""
    if not counts:
        return variant
    if variant.pipeline is None:
        raise OptionError(f"variant {variant.name!r} does not run pyannote's pipeline and cannot honour "
                          f"{', '.join(sorted(counts))}")
    pipe = variant.pipeline
    given = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return replace(variant, description=f"{variant.description}; {given}",
                   run=lambda rec: run_pyannote(pipe, rec, **counts))
