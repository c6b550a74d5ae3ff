"""One set-up call per chapter: profile, settings, embedding model and environment.

Every chapter notebook starts with ``ch = setup("<slug>", profile)``. The settings that differ
between the ``full`` profile (the published numbers) and the ``smoke`` profile (a small subset
for quick checks) live with the chapter's code, as ``SETTINGS = {"full": {...}, "smoke":
{...}}`` in ``diaropt.techniques.<slug>`` (or in ``CHAPTER_SETTINGS`` below for the chapters
that are not techniques); a notebook reads them as ``ch.repeats``, ``ch.der_seg`` and so on.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from functools import cached_property

from ..core.constants import PROFILES

log = logging.getLogger(__name__)

CHAPTER_SETTINGS: dict[str, dict[str, dict]] = {
    # timed_files: the first realistic test files the reference pipeline itself runs on (speed, stages,
    # memory; in full, the real AMI excerpts and pyannote's sample); every file is scored through the
    # exact harness (measure.benchmark.reference_with_harness). Chapter 01 reuses the reference's rows
    # of its first trunk_files files: keep timed_files >= those.
    "baseline": {"full": {"repeats": 10, "eer_speakers": 40, "eer_per_speaker": 8, "timed_files": 3},
                 "smoke": {"repeats": 3, "eer_speakers": 6, "eer_per_speaker": 3, "timed_files": 2}},
    # chapter 90: the ablation variants (keys of diaropt.measure.ablation.ABLATION) run besides reference/optimized
    # speed_files: indices of the realistic test files timed interleaved (reference, optimized) speed_repeats times
    # (the first step, the exact harness, is chapter 00's run: diaropt.measure.ablation.HARNESS_STEP)
    # dev_steps: optimized's segmentation steps (fractions of the 10 s window) compared on the dev split
    # clustering_iterations: trials of the joint re-tune of optimized's clustering on the tune split
    "optimized": {"full": {"ablation": ["block trunk, step 1 s (torch)", "block trunk, step 2.5 s (torch)"],
                           "speed_files": [0, 2], "speed_repeats": 3, "dev_steps": [0.1, 0.2, 0.25, 0.5],
                           "clustering_iterations": 80},
                  "smoke": {"ablation": ["block trunk, step 2.5 s (torch)"], "speed_files": [0], "speed_repeats": 3,
                            "dev_steps": [0.25, 0.5], "clustering_iterations": 5}},
    # chapter 91: meeting lengths in minutes per variant (one diarize process each), the length the
    # measured points are extrapolated to, and the warm start-up repeats (after one cold start)
    "long_recordings": {"full": {"lengths": {"optimized": [1, 10, 30], "reference": [1]}, "extrapolate": 240,
                                 "startup_repeats": 3},
                        "smoke": {"lengths": {"optimized": [0.5, 1.5], "reference": [0.5]}, "extrapolate": 240,
                                  "startup_repeats": 1}},
}


def chapter_settings(slug: str, profile: str) -> dict:
    """The settings of a chapter under a profile (empty when the chapter has none)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    table = CHAPTER_SETTINGS.get(slug)
    if table is None:
        try:
            module = importlib.import_module(f"diaropt.techniques.{slug}")
        except ModuleNotFoundError:
            module = None
        table = getattr(module, "SETTINGS", None) or {p: {} for p in PROFILES}
    return dict(table[profile])


@dataclass
class Chapter:
    """What a chapter needs before its first measurement."""

    slug: str
    profile: str
    embedding: str = "auto"
    settings: dict = field(default_factory=dict)

    def __getattr__(self, name):
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"chapter {self.__dict__.get('slug')!r} has no setting {name!r}")

    @property
    def full(self) -> bool:
        return self.profile == "full"

    @cached_property
    def choice(self):
        """The embedding model (ResNet34 when its weights are supplied, else CAM++), with its reason."""
        from ..core.models import choose_embedding

        return choose_embedding(self.embedding)

    @cached_property
    def test_set(self) -> list:
        """The whole test split under this profile."""
        from ..core.data import benchmark_set

        return benchmark_set("test", self.profile)

    @cached_property
    def realistic_test(self) -> list:
        """The realistic test split (``core.meetings``: real AMI test excerpts, pyannote's sample and
        simulated adult meetings), rendered once per build; chapter 00 scores the reference on it."""
        from ..core.meetings import evaluation_set

        return evaluation_set("test", self.profile)

    @cached_property
    def realistic_dev(self) -> list:
        """The realistic dev split: where design choices (steps, batch sizes, variants) are made."""
        from ..core.meetings import evaluation_set

        return evaluation_set("dev", self.profile)

    @cached_property
    def realistic_tune(self) -> list:
        """The realistic tune split: where hyper-parameters (thresholds, weights) are tuned."""
        from ..core.meetings import evaluation_set

        return evaluation_set("tune", self.profile)

    @cached_property
    def tune_set(self) -> list:
        from ..core.data import benchmark_set

        return benchmark_set("tune", self.profile)

    @cached_property
    def environment(self) -> dict:
        from ..measure.environment import environment

        return environment()

    def describe(self) -> str:
        env = self.environment
        return (f"chapter {self.slug}, profile {self.profile}; embedding: {self.choice.model_id} "
                f"({self.choice.reason}); CPU: {env['cpu']}, {env['logical_cores']} logical cores, "
                f"torch threads {env['torch_threads']}")


def setup(slug: str, profile: str, embedding: str = "auto") -> Chapter:
    """The chapter's settings for ``profile``; prints one line naming the profile, the embedding
    model and the machine, so every executed page says what produced its numbers, and glues the
    machine's facts for the prose (``env_cores``: logical cores, ``env_cpu``: CPU model), so no
    page types "2-core"."""
    from .results import glue

    ch = Chapter(slug, profile, embedding, chapter_settings(slug, profile))
    print(ch.describe())
    glue("env_cores", ch.environment["logical_cores"], ".0f")
    glue("env_cpu", str(ch.environment["cpu"]))
    return ch
