"""Named constants shared by every module and chapter (no literal ``160000`` elsewhere)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

SAMPLE_RATE = 16_000  # Hz: what both real models take
WINDOW_SECONDS = 10.0  # segmentation-3.0's window, also the embedding trunk's block
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)  # 160 000 samples
MIN_DURATION = 0.5  # seconds: below this no embedding or segmentation is meaningful
SEGMENTATION_FRAMES = 589  # segmentation-3.0's output frames per 10 s window
LOCAL_SPEAKERS = 3  # segmentation-3.0's local speakers per window (powerset of 3, at most 2 at once)
PROFILES = ("full", "smoke")  # full = the published numbers, smoke = a small subset for quick checks
