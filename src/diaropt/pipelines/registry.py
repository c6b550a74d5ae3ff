"""The registry of named pipeline variants: ``name -> "module:factory"``, resolved lazily.

A *variant* is a ``Variant``: a name, a description, ``run(recording) -> (hypothesis, stage
seconds)`` and the models that produced it. This module imports none of the pipelines: a
factory's module is imported only when its variant is asked for, so there is no import cycle
and no import whose position in a file matters. The CLI and every chapter benchmark any
variant by name.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.errors import DiaroptError

STAGES = ("segmentation", "counting", "embedding", "clustering", "total")

VARIANTS: dict[str, str] = {
    "reference": "diaropt.pipelines.reference:reference_variant",
    "shared-trunk": "diaropt.pipelines.trunks:shared_trunk_variant",
    "shared-trunk-skip": "diaropt.pipelines.trunks:shared_trunk_skip_variant",
    "streaming": "diaropt.pipelines.streaming:streaming_variant",
    "optimized": "diaropt.pipelines.optimized:optimized_variant",
}


# Variants that run pyannote's ``SpeakerDiarization``: its call takes ``num_speakers``,
# ``min_speakers`` and ``max_speakers`` (``reference.with_speaker_counts``). The online
# ``streaming`` diarizer opens speakers as they arrive and has no final clustering to constrain.
SPEAKER_COUNT_VARIANTS = frozenset({"reference", "shared-trunk", "shared-trunk-skip", "optimized"})


class UnknownVariant(DiaroptError, KeyError):
    """No variant of that name is registered."""

    def __str__(self) -> str:  # KeyError's str() would quote the whole message
        return str(self.args[0]) if self.args else ""


@dataclass
class Variant:
    """A named pipeline: ``run(recording) -> (hypothesis, stage seconds)``; ``pipeline`` is the
    pyannote ``SpeakerDiarization`` it runs, when it runs one (speaker counts go to its call)."""

    name: str
    description: str
    run: Callable
    models: dict = field(default_factory=dict)
    pipeline: object = None


def factory(name: str) -> Callable[..., Variant]:
    """The factory function of a registered variant (imports its module)."""
    if name not in VARIANTS:
        raise UnknownVariant(f"unknown variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    module, _, attr = VARIANTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def get_variant(name: str, **kwargs) -> Variant:
    """Build a registered variant with its keyword options."""
    return factory(name)(**kwargs)
