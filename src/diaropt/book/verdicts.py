"""Verdicts on the guide's claims, computed from measurements (never typed into prose).

The DER rule uses the change's confidence interval when one is given (``measure.stats``): a claim
of "at most ``b`` points worse" is *confirmed* when the whole interval lies at or below ``b``,
*refuted* when the whole interval lies above it, and *within noise* when the interval straddles
``b`` (this test set cannot tell). Without an interval the point estimate decides.
"""
from __future__ import annotations

NO_CHANGE_TOLERANCE = 1e-6  # points: a "no change" claim is met by a change this small


def speed_verdict(measured: float, claimed_low: float, claimed_high: float | None = None) -> str:
    """Verdict on a claimed speed-up range from a measured ratio.

    confirmed: at or above the claim's lower bound; partly: a real gain (>= 1.1x) below it;
    refuted: no meaningful gain (< 1.1x).
    """
    if measured >= claimed_low * 0.95:
        return "confirmed"
    if measured >= 1.1:
        return "partly"
    return "refuted"


def decided(ratio, rule):
    """``rule`` applied to a ``measure.stats.Ratio`` (medians of interleaved rounds): to its
    median when the ratio is stable; when it is too spread (``Ratio.unstable``), to its whole
    range: the answer when both ends get the same one (every round agrees), else None."""
    if not ratio.unstable:
        return rule(ratio.median)
    low, high = rule(ratio.low), rule(ratio.high)
    return low if low == high else None


def ratio_verdict(ratio, claimed_low: float, claimed_high: float | None = None) -> str:
    """``speed_verdict`` on the median of interleaved repeats (a ``measure.stats.Ratio``); a ratio
    whose spread is too wide (``Ratio.unstable``) is judged only when its whole range gets the
    same verdict, and otherwise shown but not judged (``decided``)."""
    word = decided(ratio, lambda v: speed_verdict(v, claimed_low, claimed_high))
    return "unstable: not judged" if word is None else word


SPEED_RANKS = {"refuted": 0, "partly": 1, "confirmed": 2}


def ratios_verdict(ratios: list, claimed_low: float, claimed_high: float | None = None, *, best: bool = True) -> str:
    """``ratio_verdict`` over several candidates: the best of their verdicts (``best=True``: the
    claim holds if one of them meets it, e.g. the fastest fusion) or the worst (``best=False``:
    it must hold for all, e.g. both pruned models). A candidate the rule cannot settle leaves
    the whole not judged when its range reaches past the settled answer (a better verdict for
    ``best``, a worse one otherwise)."""
    def rank(v):
        return SPEED_RANKS[speed_verdict(v, claimed_low, claimed_high)]
    words = [(r, ratio_verdict(r, claimed_low, claimed_high)) for r in ratios]
    settled = [SPEED_RANKS[w] for _, w in words if w in SPEED_RANKS]
    open_ends = [rank(r.high) if best else rank(r.low) for r, w in words if w not in SPEED_RANKS]
    if not settled or (open_ends and (max(open_ends) > max(settled) if best else min(open_ends) < min(settled))):
        return "unstable: not judged"
    pick = max(settled) if best else min(settled)
    return next(w for w, k in SPEED_RANKS.items() if k == pick)


def der_verdict(delta_points: float, claimed_max_points: float, ci: tuple[float, float] | None = None) -> str:
    """Verdict on a claimed DER bound (points of DER) from a measured change and, when given, its
    95 % confidence interval ``(low, high)``. A bound of 0 means "no change": it is checked on both
    sides (an interval inside ±``NO_CHANGE_TOLERANCE`` confirms it, one excluding 0 refutes it)."""
    if ci is None or any(v != v for v in ci):  # no interval (or NaN): the point estimate decides
        if claimed_max_points == 0:
            return "confirmed" if abs(delta_points) <= NO_CHANGE_TOLERANCE else "refuted"
        return "confirmed" if delta_points <= claimed_max_points else "refuted"
    low, high = ci
    if claimed_max_points == 0:
        if -NO_CHANGE_TOLERANCE <= low and high <= NO_CHANGE_TOLERANCE:
            return "confirmed"
        return "refuted" if low > 0 or high < 0 else "within noise"
    if high <= claimed_max_points:
        return "confirmed"
    return "refuted" if low > claimed_max_points else "within noise"


SAME_OUTPUT_TOLERANCE = 1e-4  # max |difference| of float32 outputs that counts as "the same output"
MINOR_GAIN = 1.1  # a setting whose speed-up stays within 1/1.1 .. 1.1 is second-order


def same_output_verdict(max_error: float, tolerance: float = SAME_OUTPUT_TOLERANCE) -> str:
    """A claim that a change leaves the output (and so DER) unchanged: confirmed when the largest
    difference measured is within float32 rounding (``tolerance``), refuted otherwise."""
    if max_error != max_error:
        return "not measured"
    if max_error <= tolerance:
        return f"confirmed: the same outputs (max difference {max_error:.1e})"
    return f"refuted: outputs differ by up to {max_error:.2g}"


def same_size_verdict(before_mb: float, after_mb: float, tolerance: float = 0.01) -> str:
    """A claim that a change leaves the model's size unchanged: confirmed when the parameters
    weigh the same within ``tolerance`` (relative), refuted otherwise; the change is stated."""
    change = (after_mb - before_mb) / before_mb
    text = f"{before_mb:.2f} MB -> {after_mb:.2f} MB ({100 * change:+.1f} %)"
    return f"confirmed: {text}" if abs(change) <= tolerance else f"refuted: {text}"


def repeat_work_verdict(repeated: dict, first_run) -> tuple[str, str]:
    """Two verdicts on caching: (avoids redundant computation, makes a first run faster), from
    interleaved speed-ups (``measure.stats.Ratio``: uncached / cached).

    The first is confirmed when every repeated workload gains at least ``MINOR_GAIN`` (partly when
    only some do); the second is refuted when the cold run gains less than ``MINOR_GAIN``. A ratio
    too spread to judge (``decided`` gives None) is left out and named."""
    def gains(v):
        return v >= MINOR_GAIN
    calls = {k: decided(r, gains) for k, r in repeated.items()}
    shaky = [k for k, c in calls.items() if c is None]
    won = [k for k, c in calls.items() if c]
    note = f" ({', '.join(shaky)}: unstable, not judged)" if shaky else ""
    if not won:
        repeated_word = "unstable: not judged" if len(shaky) == len(repeated) else "refuted" + note
    elif len(won) == len(repeated):
        repeated_word = "confirmed for repeated work"
    else:
        repeated_word = f"partly: only {', '.join(won)}" + note
    first = {None: "unstable: not judged", True: "confirmed",
             False: "refuted: a cache only helps work that repeats"}[decided(first_run, gains)]
    return repeated_word, first


def threads_verdict(best_threads: dict[str, int], physical_cores: int, over_cores: dict | None = None) -> str:
    """The CPU reading of "use the cores": confirmed when every model is fastest with one thread
    per physical core, partly when some model peaks at another count. With ``over_cores`` (per
    model, its fastest count's ``measure.stats.Ratio`` over one thread per core, round by round),
    a model counts as peaking elsewhere only when that count gains at least ``MINOR_GAIN`` by
    ``decided``'s rule; one the rule cannot settle is named."""
    over_cores = over_cores or {}
    off, open_ = {}, []
    for m, n in best_threads.items():
        if int(n) == int(physical_cores):
            continue
        gain = decided(over_cores[m], lambda v: v >= MINOR_GAIN) if m in over_cores else True
        if gain:
            off[m] = n
        elif gain is None:
            open_.append(m)
    note = f" ({', '.join(open_)}: unstable, not judged)" if open_ else ""
    if not off:
        return f"confirmed: fastest at one thread per physical core ({physical_cores}){note}"
    return "partly: " + ", ".join(f"{m} fastest at {int(n)} threads" for m, n in off.items()) + \
        f" on {physical_cores} physical cores{note}"


def minor_verdict(ratios: list) -> str:
    """Settings' speed-ups (``measure.stats.Ratio``: medians of interleaved rounds with their
    range), each settled by ``decided``: second-order when every one lies within ``1/MINOR_GAIN``
    .. ``MINOR_GAIN``; matters when some lies outside it; within noise when the rest cannot be
    settled."""
    ratios = [r for r in ratios if r.median == r.median]
    if not ratios:
        return "not measured"

    def band(v):  # a class per side: a range from below to above the band settles nothing
        return "slower" if v < 1 / MINOR_GAIN else ("faster" if v > MINOR_GAIN else "inside")
    calls = [decided(r, band) for r in ratios]
    gains = [r.median for r in ratios]
    span = f"from {min(gains):.2f}x to {max(gains):.2f}x"
    if any(c in ("slower", "faster") for c in calls):
        return f"matters: {span}"
    if all(c == "inside" for c in calls):
        return f"second-order: every setting within ±{100 * (MINOR_GAIN - 1):.0f} %"
    return f"within noise: {span}, and not every range settles within ±{100 * (MINOR_GAIN - 1):.0f} %"


def target_verdict(measured: float, target: float, unit: str, *, at_most: bool = True,
                   extrapolated_from: float | None = None) -> str:
    """An issue's or a user's target (not the guide's claim): "met" when ``measured`` is at most
    (or, ``at_most=False``, at least) ``target``, "not met" otherwise. A figure extrapolated from
    runs up to ``extrapolated_from`` minutes says so, and how far it reaches."""
    if measured != measured:
        return "not measured"
    ok = measured <= target if at_most else measured >= target
    sign = ("<=" if ok else ">") if at_most else (">=" if ok else "<")
    how = f"extrapolated from runs up to {extrapolated_from:g} min: " if extrapolated_from else ""
    return f"{'met' if ok else 'not met'} ({how}{measured:.2f} {unit} {sign} {target:g} {unit})"


def typed_judgements(markdown: str) -> list[str]:
    """Lines of a notebook's markdown that type a verdict or a machine fact instead of gluing it:
    a verdict word (``book.claims.WORDS`` but the "not measured" ones, "not met") or a core count ("2-core", "on 2 cores")
    outside a ``{glue:...}`` role. The book's rule: every judgement comes from a cell."""
    import re

    from .claims import WORDS

    # "not measured" / "not measurable here" state a platform's limits, which prose may explain
    words = "|".join(re.escape(w) for w in (*WORDS, "not met") if not w.startswith("not measur"))
    pattern = re.compile(rf"\b({words})\b|\b\d+-core\b|\b(\d+|two|four) (physical |logical )?cores\b", re.I)
    found = []
    for line in markdown.splitlines():
        bare = re.sub(r"\{glue(:\w+)?\}`[^`]*`", "", line)
        if pattern.search(bare):
            found.append(line.strip())
    return found
