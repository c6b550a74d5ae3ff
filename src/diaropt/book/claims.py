"""The guide's claims, the chapters' measurements and the verdict, in one place (chapter 90).

The seed guide (``model-optimization-guide.md``) closes with a *Performance Benchmarks* table:
five techniques, each with a claimed speed-up, size reduction and DER impact. ``CLAIMS`` is
that table, transcribed once (15 ``Claim``\\ s: row x quantity). The technique chapters measure
them and save what they measured as ``<slug>-summary-<profile>.json`` (``save_summary``; the
keys of each file are the chapter's, see ``SUMMARY_FILES``). ``measurements(profile)`` reads
those files and turns each chapter's keys into one ``Measurement`` per claim, and
``verdict(claim, measurement)`` is the one rule that turns a claim and a measurement into a
``Verdict``: *confirmed*, *partly*, *refuted*, *not measurable here* (a claim about hardware
this machine does not have) or *not measured* (no summary, or a figure a profile skips), always
with its reason. Speed and DER use ``book.verdicts`` (``speed_verdict``, ``der_verdict``), the
rules every chapter's own verdict uses.

``guide_rows(profile, speedup=..., der_delta=...)`` is chapter 90's table (the guide's rows,
plus the composed ``optimized`` pipeline against the book's target), ``other_rows(profile)``
the techniques the guide's table has no row for, and ``verdict_summary(profile)`` the
sentence the summary quotes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .results import fmt, load_json, results_dir, save_json
from .verdicts import der_verdict, ratios_verdict, speed_verdict

GUIDE = "model-optimization-guide.md"  # the seed guide this book checks
TABLE = "Performance Benchmarks"

QUANTITIES = ("speed", "size", "der")
WORDS = ("confirmed", "partly", "refuted", "within noise", "not measurable here", "not measured")

# The book's own target for the composed pipeline (chapter 90): RTFx ratio and strict DER change.
TARGET = {"speedup": 20.0, "der_points": 0.5}


@dataclass(frozen=True)
class Claim:
    """One cell of the guide's table.

    ``quantity``: ``"speed"`` (a ratio, x faster: ``low``-``high``), ``"size"`` (a reduction in
    percent: ``low``) or ``"der"`` (a bound on the DER change in points: ``low``; a bound of 0
    claims *no change*). ``claimed`` is the cell as the guide writes it."""

    row: str
    quantity: str
    claimed: str
    low: float
    high: float | None = None
    section: str = TABLE
    technique: str = ""  # the guide's section on the technique
    chapter: str = ""  # the slug of the chapter that measures it
    footnote: str = ""

    def __post_init__(self):
        if self.quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {QUANTITIES}, got {self.quantity!r}")

    @property
    def label(self) -> str:
        """The row as the book's table names it ("FP16 Quantization" -> "FP16 quantization")."""
        first, *rest = self.row.split(" ")
        return " ".join([first, *(w.lower() for w in rest)])

    @property
    def shown(self) -> str:
        """The claimed value as the book's table shows it: "50%" -> "-50 %", "< 1%" -> "< 1 %"."""
        text = self.claimed.replace("%", " %")
        return f"-{text}" if self.quantity == "size" and self.low != 0 else text


def _row(row: str, speed: tuple, size: float, der: float, technique: str, chapter: str, footnote: str = ""):
    speed_text, low, high = speed
    return [Claim(row, "speed", speed_text, low, high, technique=technique, chapter=chapter, footnote=footnote),
            Claim(row, "size", f"{size:g}%", size, technique=technique, chapter=chapter),
            Claim(row, "der", (f"< {der:g}%" if der else "0%"), der, technique=technique, chapter=chapter)]


# The guide's "Performance Benchmarks" table, as written:
# | Optimization | Speed Improvement | Size Reduction | DER Impact |
CLAIMS: list[Claim] = [
    *_row("FP16 Quantization", ("1.5x", 1.5, None), 50, 0.5, "1. Model Quantization", "quantization"),
    *_row("INT8 Quantization", ("2-3x", 2.0, 3.0), 75, 1.0, "1. Model Quantization", "quantization"),
    *_row("Operation Fusion", ("1.2x", 1.2, None), 0, 0.0, "2. Operation Fusion", "fusion"),
    *_row("Batch Processing", ("2-4x*", 2.0, 4.0), 0, 0.0, "3. Batch Processing", "batching",
          footnote="*When processing multiple files"),
    *_row("Pruning (30%)", ("1.3x", 1.3, None), 30, 1.0, "4. Model Pruning", "pruning"),
]


def claim(row: str, quantity: str) -> Claim:
    """The claim of a guide row (as the guide spells it) for one quantity."""
    for c in CLAIMS:
        if c.row == row and c.quantity == quantity:
            return c
    raise KeyError(f"the guide's table has no {quantity!r} claim for {row!r}")


def rows() -> list[str]:
    """The guide's rows, in its order."""
    return list(dict.fromkeys(c.row for c in CLAIMS))


# ------------------------------------------------------------------------------------------
# what the chapters saved


# slug -> the file stem each chapter writes (``<stem>-<profile>.json``), the chapter's notebook
SUMMARY_FILES: dict[str, tuple[str, str]] = {
    "fusion": ("fusion-summary", "01_fusion"),
    "batching": ("batching-summary", "02_batching"),
    "quantization": ("quantization-summary", "03_quantization"),
    "streaming": ("streaming-chunks", "05_streaming"),
    "caching": ("caching-summary", "06_caching"),
    "hardware": ("hardware-summary", "07_hardware"),
    "parallel": ("parallel-summary", "08_parallel"),
    "pruning": ("pruning-summary", "09_pruning"),
    "ensembles": ("ensembles-summary", "10_ensembles"),
}


def summary_path(slug: str, profile: str) -> Path:
    stem = SUMMARY_FILES.get(slug, (f"{slug}-summary", ""))[0]
    return results_dir() / f"{stem}-{profile}.json"


@dataclass(frozen=True)
class ChapterSummary:
    """What a chapter saved for the summary: its own keys (``values``), read back typed."""

    slug: str
    profile: str
    values: dict
    path: Path | None = None

    def __getitem__(self, key):
        return self.values[key]

    def get(self, key, default=None):
        return self.values.get(key, default)

    @property
    def embedding(self) -> str:
        """The embedding model the chapter measured (model id), "" when it did not record it."""
        return str(self.values.get("embedding") or (self.values.get("models") or {}).get("embedding") or "")

    @property
    def cpu(self) -> str:
        """The CPU the chapter measured on, "" when it did not record it."""
        return str(self.values.get("cpu") or (self.values.get("environment") or {}).get("cpu") or "")

    @property
    def chapter(self) -> str:
        return SUMMARY_FILES.get(self.slug, ("", self.slug))[1]


def save_summary(slug: str, profile: str, values: dict) -> Path:
    """Write a chapter's summary (``summary_path``: ``<slug>-summary-<profile>.json`` in
    ``results_dir()``, or the stem ``SUMMARY_FILES`` names) with the chapter's keys, plus
    ``cpu`` (the machine) when the chapter did not record it."""
    if "cpu" not in values and "environment" not in values:
        from ..measure.environment import cpu_model

        values = {**values, "cpu": cpu_model()}
    return save_json(values, summary_path(slug, profile))


def load_summary(slug: str, profile: str) -> ChapterSummary | None:
    """A chapter's saved summary, or None when that chapter has not run under ``profile``."""
    path = summary_path(slug, profile)
    if not path.exists():
        return None
    return ChapterSummary(slug, profile, load_json(path), path)


def missing_reason(slug: str, profile: str) -> str:
    """Why a summary is not there."""
    chapter = SUMMARY_FILES.get(slug, ("", slug))[1]
    return f"{summary_path(slug, profile).name} is missing: run {chapter or slug} under the {profile} profile first"


# ------------------------------------------------------------------------------------------
# measurements and the verdict


@dataclass(frozen=True)
class Measurement:
    """What a chapter measured for one claim.

    ``value`` is the figure the verdict compares (speed: ratio; size: reduction in percent;
    DER: change in points; None or NaN: not measured), ``text`` the cell the table shows;
    ``model`` (embedding model id), ``cpu`` and ``scheme`` say what produced it. ``scope``
    qualifies the verdict (e.g. measured on CPU, where the guide means Apple hardware);
    ``measurable=False`` marks a claim this machine cannot test (``note`` says why). ``ci`` is
    a DER change's paired-bootstrap 95 % interval (``measure.stats.der_change``), when measured."""

    value: float | None
    text: str
    model: str = ""
    cpu: str = ""
    scheme: str = ""
    note: str = ""
    scope: str = ""
    measurable: bool = True
    ci: tuple[float, float] | None = None
    ratios: tuple = ()  # a speed's measure.stats.Ratio(s) (interleaved rounds), when measured so
    combine: str = "worst"  # several ratios: the claim must hold for all ("worst") or for one ("best")

    @classmethod
    def speed(cls, ratios, value: float, text: str, **kw) -> Measurement:
        """A speed measured as interleaved rounds (``ratios``: a ``Ratio.as_dict()`` or a list of
        them; None for a single figure ``value``): the figure is the median of the first (the
        one a chapter reports), and the text says how many rounds, at its ``{rounds}`` or at its end."""
        from ..measure.stats import Ratio

        if not ratios:
            return cls(value, text.replace("{rounds}", ""), **kw)
        rs = tuple(Ratio.from_columns(d, "median", "low", "high", "repeats")
                   for d in (ratios if isinstance(ratios, list | tuple) else [ratios]))
        r = rs[0]
        rounds = f"median of {r.repeats} interleaved rounds, {r.low:.2f}-{r.high:.2f}"
        text = text.replace("{rounds}", rounds) if "{rounds}" in text else f"{text} ({rounds})"
        return cls(r.median, text, ratios=rs, **kw)

    @property
    def measured(self) -> bool:
        return self.measurable and self.value is not None and not math.isnan(self.value)


@dataclass(frozen=True)
class Verdict:
    """A verdict word (one of ``WORDS``), its reason, and the qualifier the table shows after it."""

    word: str
    reason: str
    qualifier: str = ""

    def __str__(self) -> str:
        return f"{self.word} {self.qualifier}" if self.qualifier else self.word


def size_verdict(reduction_pct: float, claimed_pct: float) -> str:
    """Verdict on a claimed size reduction (percent).

    A claim of 0 % (no change) is confirmed when the size changed by less than 0.5 %; otherwise
    confirmed within 5 points of the claim, partly for a real reduction (>= 5 %), else refuted."""
    if claimed_pct == 0:
        return "confirmed" if abs(reduction_pct) < 0.5 else "refuted"
    if reduction_pct >= claimed_pct - 5.0:
        return "confirmed"
    return "partly" if reduction_pct >= 5.0 else "refuted"


def verdict(claim: Claim, measurement: Measurement | None) -> Verdict:
    """The one rule: a claim and what was measured -> a verdict with its reason.

    - no measurement, or a NaN/None value: *not measured* (the reason says why: a missing
      summary, a figure the smoke profile skips);
    - ``measurable=False``: *not measurable here* (e.g. Apple Neural Engine speed on Linux);
    - speed: ``speed_verdict`` (confirmed at >= 95 % of the claim's lower bound, partly for a
      real gain >= 1.1x, refuted below), through ``ratios_verdict`` when the speed is measured as
      interleaved rounds (a spread the verdict cannot settle: *not measured*, unstable);
      DER: ``der_verdict`` against the claimed bound in
      points, on the change's 95 % CI when the chapter measured one (*within noise* when the
      interval straddles the bound; a bound of 0 is checked on both sides); size: ``size_verdict``.
    """
    if measurement is None:
        return Verdict("not measured", f"no measurement of {claim.row} ({claim.quantity})")
    if not measurement.measurable:
        return Verdict("not measurable here", measurement.note or "needs hardware this machine does not have",
                       f"({measurement.note})" if measurement.note else "")
    if not measurement.measured:
        note = measurement.note or "no value"
        return Verdict("not measured", note, f"({note})")
    v = float(measurement.value)
    what = f"{claim.row}: claimed {claim.claimed}"
    if claim.quantity == "speed":
        word = ratios_verdict(list(measurement.ratios), claim.low, claim.high, best=measurement.combine == "best") \
            if measurement.ratios else speed_verdict(v, claim.low, claim.high)
        if word == "unstable: not judged":
            return Verdict("not measured", "unstable speed ratio: not judged", "(unstable speed ratio: not judged)")
        reason = f"{what}, measured {v:.2f}x"
    elif claim.quantity == "der":
        word = der_verdict(v, claim.low, measurement.ci)
        reason = f"{what} DER, measured {v:+.2f} points"
        if measurement.ci is not None:
            reason += f" (95 % CI {measurement.ci[0]:+.2f} to {measurement.ci[1]:+.2f})"
    else:
        word = size_verdict(v, claim.low)
        reason = f"{what} smaller, measured {v:.1f} % smaller"
    if measurement.scope:
        reason += f" ({measurement.scope})"
    return Verdict(word, reason, measurement.scope)


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def _best(d: dict) -> float:
    """The best (largest) of a per-model dict, ignoring models not measured."""
    vals = _finite(d.values())
    return max(vals) if vals else math.nan


def _worst(d: dict, fn=min) -> float:
    vals = _finite(d.values())
    return fn(vals) if vals else math.nan


def _with_unit(value, spec: str, unit: str) -> str:
    """``fmt(value) + unit``; just "n/a" for a model this build did not measure."""
    text = fmt(value, spec)
    return text if text == "n/a" else f"{text}{unit}"


def _pair(d: dict, spec: str = ".2f") -> str:
    return f"seg {_with_unit(d['segmentation'], spec, 'x')}, emb {_with_unit(d['embedding'], spec, 'x')}"


CPU_NOT_ANE = "on CPU; ANE not measurable here"
COREML_SPEED = "the guide's speed-up is CoreML's on Apple hardware, which needs macOS"
BATCH_IDENTICAL = 1e-3  # batched vs per-call outputs closer than this: the pipeline's output, and its DER, cannot change


def _quantization(s: ChapterSummary, scheme: str) -> dict[str, Measurement]:
    speed, size, der = s[f"speed_{scheme}"], s[f"size_{scheme}"], s[f"der_{scheme}_points"]
    meta = {"model": s.embedding, "cpu": s.cpu}
    int8 = scheme == "int8"
    return {
        # the guide's speed-ups are CoreML's on Apple hardware; the CPU counterpart is context only
        "speed": Measurement(_best(speed), _pair(speed) + " on CPU; CoreML: macOS only", scope=CPU_NOT_ANE,
                             scheme="CPU int8 (torch / ONNX Runtime dynamic)" if int8 else "CPU fp16 arithmetic (torch)",
                             measurable=False, note=COREML_SPEED, **meta),
        "size": Measurement(100 * (1 - _best(size)), f"{fmt(100 * (1 - _best(size)), '.0f')} % smaller",
                            scheme="CoreML palettize 8-bit per tensor" if int8 else "CoreML fp16", **meta),
        "der": Measurement(der, f"{fmt(der, '+.2f')} pts{_ci_text(s.get(f'der_{scheme}_ci'))}"
                           + (" (8-bit palettes)" if int8 else ""),
                           scheme="CoreML palettize 8-bit per tensor" if int8
                           else "emulated fp16 (both models)",
                           note="smoke" if der is None or math.isnan(der) else "", ci=_ci(s.get(f"der_{scheme}_ci")), **meta),
    }


def _fusion(s: ChapterSummary) -> dict[str, Measurement]:
    meta = {"model": s.embedding, "cpu": s.cpu}
    return {
        "speed": Measurement.speed(s.get("skip_e2e_ratio"), s["skip_e2e_speedup"],
                                   f"models: seg {fmt(s['seg_model_speedup'])}x, emb {fmt(s['emb_model_speedup'])}x; "
                                   f"pipeline (shared trunk, silent speakers skipped): {fmt(s['skip_e2e_speedup'])}x",
                                   scheme="shared embedding trunk with silent speakers skipped, end to end", **meta),
        "size": Measurement(0.0, "0 %", scheme="no weight changes", **meta),
        "der": Measurement(s["der_delta_points"], f"{fmt(s['der_delta_points'], '+.2f')} pts{_ci_text(s.get('der_delta_ci'))}",
                           scheme="shared trunk", ci=_ci(s.get("der_delta_ci")), **meta),
    }


def _batching(s: ChapterSummary) -> dict[str, Measurement]:
    meta = {"model": s.embedding, "cpu": s.cpu}
    err = s["der_max_error"]
    same = err is not None and err <= BATCH_IDENTICAL
    return {
        "speed": Measurement.speed(s.get("pipe_ratio"), s["pipe_gain"],
                                   f"seg {fmt(s['seg_gain'])}x, emb {fmt(s['emb_gain'])}x; pipeline {fmt(s['pipe_gain'])}x",
                                   scheme="best batch size, end to end", **meta),
        "size": Measurement(0.0, "0 %", scheme="no weight changes", **meta),
        "der": Measurement(0.0 if same else math.nan, f"identical (max error {fmt(err, '.1e')})",
                           scheme="batched vs per-call outputs",
                           note="" if same else f"batched outputs differ by {fmt(err, '.1e')}: DER not run", **meta),
    }


def _pruning(s: ChapterSummary) -> dict[str, Measurement]:
    meta = {"model": s.embedding, "cpu": s.cpu}
    removed, speed, der = s["params_removed_pct"], s["speed"], s["der_after_kd_points"]
    ratios = s.get("speed_ratio") or {}
    # the slower model first (the figure shown); the verdict must hold for both models
    both = sorted(ratios.values(), key=lambda q: q["median"])

    def ci_text(model):
        return _ci_text((s.get("der_after_kd_ci") or {}).get(model))
    return {
        "speed": Measurement.speed(both, _worst(speed),
                                   _pair(speed) + f" (structural, ratio {fmt(s.get('ratio', 0.3), 'g')}"
                                   + ("; the slower model: {rounds}" if both else "")
                                   + "); the guide's snippet: no change", scope="(structural only)",
                                   scheme="structural pruning, torch", note="the slower of the two models", **meta),
        "size": Measurement(_worst(removed), f"seg {_with_unit(removed['segmentation'], '.0f', ' %')}, emb "
                            f"{_with_unit(removed['embedding'], '.0f', ' %')} fewer parameters (structural); snippet: 0 %",
                            scheme="structural pruning (parameters)", **meta),
        "der": Measurement(_worst(der, max), f"seg {fmt(der['segmentation'], '+.2f')}{ci_text('segmentation')}, "
                           f"emb {fmt(der['embedding'], '+.2f')}{ci_text('embedding')} pts after "
                           "distillation (emb: threshold not re-tuned)",
                           scheme="structural pruning + distillation", ci=_ci_of_worst(s, "der_after_kd_ci", der), **meta),
    }


def _ci(pair) -> tuple[float, float] | None:
    """A DER change's saved 95 % CI (``[low, high]``), or None when absent or not measured."""
    if not pair or any(v is None or math.isnan(float(v)) for v in pair):
        return None
    return float(pair[0]), float(pair[1])


def _ci_text(pair) -> str:
    ci = _ci(pair)
    return f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""


def _ci_of_worst(s: ChapterSummary, key: str, der: dict) -> tuple[float, float] | None:
    """The CI of the model with the largest DER change (the one the verdict judges)."""
    finite = {k: float(v) for k, v in der.items() if v is not None and not math.isnan(float(v))}
    return _ci((s.get(key) or {}).get(max(finite, key=finite.get))) if finite else None


# guide row -> (slug, reader of that chapter's summary)
READERS: dict[str, tuple[str, Callable[[ChapterSummary], dict[str, Measurement]]]] = {
    "FP16 Quantization": ("quantization", lambda s: _quantization(s, "fp16")),
    "INT8 Quantization": ("quantization", lambda s: _quantization(s, "int8")),
    "Operation Fusion": ("fusion", _fusion),
    "Batch Processing": ("batching", _batching),
    "Pruning (30%)": ("pruning", _pruning),
}


def row_measurements(row: str, profile: str) -> dict[str, Measurement]:
    """The measurements of one guide row, from its chapter's summary; a missing summary gives
    "not measured" measurements whose note names the file to produce."""
    slug, reader = READERS[row]
    s = load_summary(slug, profile)
    if s is None:
        reason = missing_reason(slug, profile)
        return {q: Measurement(None, "not measured", note=reason) for q in QUANTITIES}
    try:
        return reader(s)
    except (KeyError, TypeError) as e:  # a summary written with other keys: say so, do not guess
        reason = f"{s.path.name if s.path else slug} lacks {e}: re-run {s.chapter}"
        return {q: Measurement(None, "not measured", note=reason) for q in QUANTITIES}


@dataclass
class Checked:
    """A claim, what was measured, and the verdict."""

    claim: Claim
    measurement: Measurement
    verdict: Verdict = field(init=False)

    def __post_init__(self):
        self.verdict = verdict(self.claim, self.measurement)


def check_all(profile: str) -> list[Checked]:
    """Every claim of the guide's table with its measurement and verdict, in the guide's order."""
    out = []
    for row in rows():
        measured = row_measurements(row, profile)
        out += [Checked(claim(row, q), measured[q]) for q in QUANTITIES]
    return out


def _cell(checked: Checked) -> str:
    """The verdict as the table shows it: a missing summary is named after its chapter."""
    v = checked.verdict
    if v.word == "not measured" and checked.measurement.text == "not measured":
        return f"not measured (run {SUMMARY_FILES[checked.claim.chapter][1]})"
    return str(v)


def target_rows(speedup: float, der_delta: float, der_ci: tuple[float, float] | None = None,
                speed_note: str = "", speed_unstable: bool = False) -> dict:
    """The composed pipeline's row: the book's target instead of a guide claim. With ``der_ci``
    (the paired-bootstrap 95 % CI of the DER change) the DER target is judged on the interval:
    met when its upper end is within the target, not met when its lower end is above it, and
    within noise otherwise (``book.verdicts.der_verdict``). An unstable speed ratio
    (``measure.stats.Ratio.unstable``) is not judged."""
    der_word = {"confirmed": "met", "refuted": "not met"}.get(d := der_verdict(der_delta, TARGET["der_points"], der_ci), d)
    ci = f" [{der_ci[0]:+.2f}, {der_ci[1]:+.2f}]" if der_ci is not None else ""
    return {"optimization": "all of the above, composed (this chapter)", "claimed speed": "—",
            "measured speed (CPU)": f"{fmt(speedup, '.1f')}x end to end" + (f" ({speed_note})" if speed_note else ""),
            "speed verdict": "unstable: not judged" if speed_unstable else
            f"target ({TARGET['speedup']:g}x) " + ("met" if speedup >= TARGET["speedup"] else "not met"),
            "claimed size": "—", "measured size": "0 % (fp32 weights)", "claimed DER": "—",
            "measured DER": f"{fmt(der_delta, '+.2f')} pts{ci}",
            "DER verdict": f"target (+{TARGET['der_points']:g}) {der_word}"}


def target_met(speedup: float, der_delta: float, der_ci: tuple[float, float] | None = None,
               speed_unstable: bool = False) -> bool:
    """Speed at or above the target (a stable ratio), and the DER change within it (its whole CI,
    when given)."""
    return (not speed_unstable and speedup >= TARGET["speedup"]
            and der_verdict(der_delta, TARGET["der_points"], der_ci) == "confirmed")


def guide_rows(profile: str, *, speedup: float | None = None, der_delta: float | None = None,
               der_ci: tuple[float, float] | None = None, speed_note: str = "",
               speed_unstable: bool = False) -> list[dict]:
    """Chapter 90's table: one row per row of the guide's table (claimed, measured, verdict for
    speed and DER; claimed and measured size), then the composed pipeline against the target
    when ``speedup`` and ``der_delta`` (strict, points) are given."""
    checked = {(c.claim.row, c.claim.quantity): c for c in check_all(profile)}
    out = []
    for row in rows():
        sp, si, de = (checked[(row, q)] for q in QUANTITIES)
        out.append({"optimization": sp.claim.label, "claimed speed": sp.claim.shown,
                    "measured speed (CPU)": sp.measurement.text, "speed verdict": _cell(sp),
                    "claimed size": si.claim.shown, "measured size": si.measurement.text,
                    "claimed DER": de.claim.shown, "measured DER": de.measurement.text, "DER verdict": _cell(de)})
    if speedup is not None and der_delta is not None:
        out.append(target_rows(speedup, der_delta, der_ci, speed_note, speed_unstable))
    return out


def verdict_summary(profile: str) -> str:
    """One sentence: which of the guide's claims each verdict word went to."""
    groups: dict[str, list[str]] = {}
    for c in check_all(profile):
        name = f"{c.claim.label} {'DER' if c.claim.quantity == 'der' else c.claim.quantity}"
        groups.setdefault(c.verdict.word, []).append(name)
    return "; ".join(f"{word}: {', '.join(groups[word])}" for word in WORDS if word in groups)


# ------------------------------------------------------------------------------------------
# the techniques the guide's table has no row for


def _streaming(st) -> str | None:
    one = [r for r in st["rows"] if r["chunk (s)"] == 1.0]
    if not one:
        return None
    return (f"1 s chunks: RTFx {fmt(one[0]['RTFx'], '.1f')}, p95 {fmt(one[0]['compute per chunk, p95 (ms)'], '.0f')} ms "
            f"per chunk, DER {fmt(one[0]['vs offline, strict (pts)'], '+.2f')} pts"
            f"{_ci_text([one[0].get('CI low'), one[0].get('CI high')])} vs offline")


def _caching(ca) -> str:
    w = {r["workload"]: r for r in ca["workloads"]}
    return (f"re-run {fmt(w['re-run']['speed-up'])}x, re-cluster {fmt(w['re-cluster (5 thresholds)']['speed-up'])}x, "
            f"first run {fmt(w['cold']['speed-up'])}x")


def _hardware(hw) -> str:
    import pandas as pd

    sc = pd.DataFrame(hw["scaling"])
    gains = {m: g.loc[g.threads == 1, "median_ms"].iloc[0] / g["median_ms"].min() for m, g in sc.groupby("model")}
    return (f"CoreML: {hw['coreml']}; CPU threads: seg {fmt(gains.get('segmentation', math.nan))}x, "
            f"emb {fmt(gains.get('embedding', math.nan))}x")


def _parallel(pa) -> str:
    import pandas as pd

    best = pd.DataFrame(pa["rows"]).set_index("mode")["throughput vs sequential"].iloc[1:].max()
    return f"best {fmt(best)}x throughput over sequential ({pa['environment']['logical_cores']} logical cores)"


def _ensembles(en) -> str:
    return (f"best embedding fusion ({en['best_fusion']['config']}): {fmt(en['best_fusion']['der_delta_points'], '+.2f')} "
            f"pts{_ci_text(en['best_fusion'].get('der_delta_ci'))} for {fmt(en['best_fusion']['cost'])}x the time; "
            f"segmentation TTA ({en['tta']['members']} shifts): {fmt(en['tta']['der_delta_points'], '+.2f')} "
            f"pts{_ci_text(en['tta'].get('der_delta_ci'))} for {fmt(en['tta']['cost'])}x")


# the guide's section -> (slug, what its chapter measured)
OTHER: dict[str, tuple[str, Callable[[ChapterSummary], str | None]]] = {
    "7. streaming": ("streaming", _streaming),
    "6. caching": ("caching", _caching),
    "5. hardware configuration": ("hardware", _hardware),
    "9. parallel files": ("parallel", _parallel),
    "10. ensembles": ("ensembles", _ensembles),
}


def other_rows(profile: str) -> list[dict]:
    """What the chapters without a row in the guide's table measured; a chapter whose summary
    is missing is left out, one whose summary lacks a key says so."""
    out = []
    for technique, (slug, reader) in OTHER.items():
        s = load_summary(slug, profile)
        if s is None:
            continue
        try:
            text = reader(s)
        except (KeyError, TypeError, IndexError) as e:
            text = f"not read: {s.path.name if s.path else slug} lacks {e}"
        if text is not None:
            out.append({"technique": technique, "measured": text, "chapter": s.chapter})
    return out


# ------------------------------------------------------------------------------------------
# the figures behind chapter 90's advice (its "what to do first" list quotes them, never types them)


def advice_figures(profile: str) -> dict[str, str]:
    """Glue name -> text: the measured figures the summary's advice rests on, read from the
    quantization summary of this build ("n/a (reason)" where that chapter did not run, "not
    measured in the <profile> profile" where it did not measure a DER)."""
    out = {}
    q = load_summary("quantization", profile)
    if q is None:
        reason = f"n/a ({missing_reason('quantization', profile)})"
        out |= dict.fromkeys(("advice_fp16_speed", "advice_int8_speed", "advice_int8_der", "advice_4bit_der"), reason)
    else:
        out["advice_fp16_speed"] = _pair(q["speed_fp16"])
        out["advice_int8_speed"] = _pair(q["speed_int8"])
        ci = _ci(q.get("der_int8_ci"))
        der, der4 = q["der_int8_points"], q["der_4bit_points"]
        not_measured = f"not measured in the {profile} profile"
        out["advice_int8_der"] = (f"{fmt(der, '+.2f')} points{_ci_text(q.get('der_int8_ci'))} "
                                  f"({der_verdict(float(der), 1.0, ci)} against the guide's 1 point)"
                                  if _finite([der]) else not_measured)
        out["advice_4bit_der"] = f"{fmt(der4, '+.2f')} points" if _finite([der4]) else not_measured
    return out
