"""Variant options and speaker counts, checked before any model is loaded.

Building a variant loads its models (seconds; for ``optimized`` also an ONNX export), and a
benchmark then runs for minutes, so an option that cannot work must be refused first, with the
accepted keys named. Left to the factories, a mistake surfaced late or not at all:
``--param segmentation_step=0`` ran pyannote's default 1 s step, because pyannote's
``Inference`` takes ``step or 0.1 * duration`` and 0 is falsy; a misspelt key was a
``TypeError`` traceback after the models had loaded.

The keys a variant accepts are the parameters of its factory (``inspect.signature`` on
``registry.factory(name)``, so the registry stays the one place that names them) that
``OPTIONS`` knows how to read from the command line; ``embedding`` has its own flag and
callables (e.g. ``integrated``) cannot be typed at a prompt.
"""
from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..core.constants import WINDOW_SECONDS
from ..core.errors import OptionError
from .registry import SPEAKER_COUNT_VARIANTS, factory


@dataclass(frozen=True)
class Option:
    """How to read one ``--param`` value: its type, what it must satisfy, in words."""

    kind: type
    ok: Callable[[object], bool]
    rule: str


def _finite(v) -> bool:
    return isinstance(v, str) or math.isfinite(v)


OPTIONS: dict[str, Option] = {
    # optimized: pyannote's step, as a fraction of the 10 s window (0.25 = 2.5 s); pyannote refuses
    # a step longer than the window and silently replaces 0 by its default
    "segmentation_step": Option(float, lambda v: 0.0 < v <= 1.0,
                                f"a fraction of the {WINDOW_SECONDS:g} s window in (0, 1], e.g. 0.25 for a "
                                f"{0.25 * WINDOW_SECONDS:g} s step"),
    "runtime": Option(str, lambda v: v in ("onnxruntime", "torch"), "onnxruntime or torch"),
    "threads": Option(int, lambda v: v >= 1, "a positive integer (ONNX Runtime intra-op threads)"),
    "linkage": Option(str, lambda v: v in ("vector", "scipy"),
                      "vector (fastcluster, O(n) memory) or scipy (pyannote's default, O(n^2) memory)"),
    # streaming: seconds (pipelines.streaming.check_online_settings checks them together)
    "step": Option(float, lambda v: 0.0 < v <= WINDOW_SECONDS, f"seconds in (0, {WINDOW_SECONDS:g}]"),
    "latency": Option(float, lambda v: 0.0 < v <= WINDOW_SECONDS, f"seconds in (0, {WINDOW_SECONDS:g}], at least step"),
    "threshold": Option(float, lambda v: 0.0 < v < 2.0, "a cosine distance in (0, 2)"),
}


def accepted_keys(variant: str) -> list[str]:
    """The ``--param`` keys ``variant`` accepts (imports its module, loads no model)."""
    params = inspect.signature(factory(variant)).parameters
    return sorted(k for k in params if k in OPTIONS)


def split_pairs(pairs) -> dict[str, str]:
    """``["step=0.5", "latency=3"]`` -> ``{"step": "0.5", "latency": "3"}``; a key given twice is refused."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise OptionError(f"--param expects KEY=VALUE, got {pair!r}")
        if key in out:
            raise OptionError(f"--param {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def _typed(key: str, text: str):
    option = OPTIONS[key]
    try:
        if option.kind is int:
            number = float(text)
            value = int(number) if number.is_integer() else None
        else:
            value = option.kind(text)
    except ValueError:
        value = None
    if value is None or not _finite(value) or not option.ok(value):
        raise OptionError(f"--param {key}={text}: expected {option.rule}")
    return value


def check_params(variant: str, pairs) -> dict:
    """The typed keyword options of ``variant`` from ``--param KEY=VALUE`` pairs, or ``OptionError``
    naming the accepted keys."""
    given = split_pairs(pairs)
    keys = accepted_keys(variant)
    for key in given:
        if key in keys:
            continue
        if not keys:
            raise OptionError(f"variant {variant!r} takes no --param options (got {key!r})")
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise OptionError(f"variant {variant!r} has no option {key!r}{hint}; accepted: {', '.join(keys)}")
    return {k: _typed(k, v) for k, v in given.items()}


def complete_params(variant: str, params: dict, embedding: str) -> dict:
    """Options that must be checked together, completed from the frozen config of ``embedding``
    (``campplus`` or ``resnet34``): the streaming variant's step, latency and threshold (given
    in full to its factory, which then reads no config)."""
    if variant != "streaming":
        return params
    from .streaming import StreamError, online_settings

    try:
        return online_settings(embedding, **params)
    except StreamError as e:
        raise OptionError(f"variant 'streaming': {e} (the settings not given with --param are the frozen ones "
                          f"of configs/reference.yaml for {embedding})") from e


def speaker_counts(num: int | None = None, min_: int | None = None, max_: int | None = None) -> dict:
    """``{num_speakers, min_speakers, max_speakers}`` as given (only those given), or ``OptionError``
    when they are not positive or contradict each other."""
    counts = {k: v for k, v in (("num_speakers", num), ("min_speakers", min_), ("max_speakers", max_)) if v is not None}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")
    if min_ is not None and max_ is not None and min_ > max_:
        raise OptionError(f"--min-speakers {min_} is more than --max-speakers {max_}")
    if num is not None and min_ is not None and num < min_:
        raise OptionError(f"--num-speakers {num} contradicts --min-speakers {min_}")
    if num is not None and max_ is not None and num > max_:
        raise OptionError(f"--num-speakers {num} contradicts --max-speakers {max_}")
    return counts


def check_speaker_support(variant: str, counts: dict) -> None:
    """Refuse speaker counts for a variant that cannot honour them (before it is built)."""
    if counts and variant not in SPEAKER_COUNT_VARIANTS:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in counts)
        raise OptionError(f"variant {variant!r} cannot honour {flags}: it does not run pyannote's clustering "
                          f"(variants that can: {', '.join(sorted(SPEAKER_COUNT_VARIANTS))})")
