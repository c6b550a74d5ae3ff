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
