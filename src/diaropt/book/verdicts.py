"""Verdicts on the guide's claims, computed from measurements (never typed into prose)."""
from __future__ import annotations


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


def der_verdict(delta_points: float, claimed_max_points: float) -> str:
    """Verdict on a claimed DER bound (points of DER) from a measured change."""
    return "confirmed" if delta_points <= claimed_max_points else "refuted"
