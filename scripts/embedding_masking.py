"""Why does the reference merge speakers? Masked pooling against masked input, on the tune split.

pyannote embeds each local speaker of a 10 s window by running the embedding network on the
*whole* window and masking only the statistics pooling. CAM++'s context-aware masking layers
average over their whole input, so the other speaker of the window can leak into every frame
before the pooling mask is applied. This script measures that leak with oracle labels (the
simulated meetings' exact references), so segmentation errors play no part:

- **pooling mask** (pyannote's way): trunk on the whole window, pooled over the speaker's
  solo frames;
- **input cut**: only the speaker's solo samples of the window, concatenated, through the trunk,
  pooled over all frames (what "masking the input" can mean without feeding zeros to the
  fbank's mean normalisation);
- **input zeroed**: the window with every other sample set to zero, pooled over the solo frames.

Each embedding is compared with the centroids of the window's speakers, taken from their own
clean source utterances: the first ``HOLD_OUT`` files of every voice are held out of the meetings
this script builds (its own copy of the tune meetings, without them), so no window contains the
audio a centroid was made from and no method is favoured. An embedding is *correct* when it is
closer to its own speaker's centroid than to the other's. Windows: every
10 s window (5 s step) of the tune meetings in which two speakers each talk alone for at least
2 s. Tune split only: nothing here is chosen on test.

    .venv/bin/python scripts/embedding_masking.py [--max-windows 400] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from unittest import mock

import numpy as np
import torch

from diaropt.core import meetings
from diaropt.core.constants import SAMPLE_RATE, WINDOW_SAMPLES
from diaropt.core.data import _utterance, speakers_with_utterances
from diaropt.core.models import load_campplus
from diaropt.pipelines.trunks import trunk_and_pool

FRAMES = 1000  # 10 ms mask frames per 10 s window
HOLD_OUT = 3  # files per voice kept out of the meetings, for the centroids
MIN_SOLO = 2.0  # seconds of solo speech per speaker in a window


def solo_masks(rec, start: float) -> dict[str, np.ndarray]:
    """{speaker: (FRAMES,) 0/1 mask of the frames where that speaker alone talks}."""
    t = start + (np.arange(FRAMES) + 0.5) * 0.01
    active = {}
    for seg, _, label in rec.reference.itertracks(yield_label=True):
        if seg.end <= start or seg.start >= start + 10:
            continue
        m = active.setdefault(label, np.zeros(FRAMES, bool))
        m |= (t >= seg.start) & (t < seg.end)
    count = sum(m.astype(int) for m in active.values()) if active else np.zeros(FRAMES, int)
    return {s: (m & (count == 1)).astype(np.float32) for s, m in active.items()}


def centroid(frames_of, pool, speaker: str) -> torch.Tensor:
    embs = []
    for rel in speakers_with_utterances()[speaker][:HOLD_OUT]:
        x = torch.from_numpy(_utterance(rel)).float()[None, None]
        embs.append(torch.nn.functional.normalize(pool(frames_of(x), None)[0], dim=-1))
    return torch.nn.functional.normalize(torch.stack(embs).mean(0), dim=-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-windows", type=int, default=400)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    model = load_campplus()
    frames_of, pool = trunk_and_pool(model)
    held_in = {s: files[HOLD_OUT:] for s, files in speakers_with_utterances().items()}
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"DIAROPT_MEETINGS": cache}), \
            mock.patch.object(meetings, "speakers_with_utterances", lambda: held_in):
        recs = [r for r in meetings.evaluation_set("tune") if r.source == "simulated"]
    cents: dict[str, torch.Tensor] = {}
    results = {m: {"correct": 0, "margins": [], "by_condition": {}} for m in ("pooling mask", "input cut", "input zeroed")}
    windows = 0
    with torch.inference_mode():
        for rec in recs:
            x = rec.waveform[0]
            for start_i in range(0, max(1, x.shape[-1] - WINDOW_SAMPLES + 1), 5 * SAMPLE_RATE):
                w = x[start_i: start_i + WINDOW_SAMPLES]
                w = torch.nn.functional.pad(w, (0, WINDOW_SAMPLES - w.shape[-1]))
                masks = solo_masks(rec, start_i / SAMPLE_RATE)
                speakers = [s for s, m in masks.items() if m.sum() * 0.01 >= MIN_SOLO]
                if len(speakers) < 2:
                    continue
                speakers = sorted(speakers, key=lambda s: -masks[s].sum())[:2]
                for s in speakers:
                    cents.setdefault(s, centroid(frames_of, pool, s))
                whole = frames_of(w[None, None])
                for k, s in enumerate(speakers):
                    other = speakers[1 - k]
                    m = torch.from_numpy(masks[s])
                    samples = m.repeat_interleave(WINDOW_SAMPLES // FRAMES).bool()
                    embs = {
                        "pooling mask": pool(whole, m[None, None])[0, 0],
                        "input cut": pool(frames_of(w[samples][None, None]), None)[0],
                        "input zeroed": pool(frames_of((w * samples)[None, None]), m[None, None])[0, 0],
                    }
                    for method, e in embs.items():
                        e = torch.nn.functional.normalize(e, dim=-1)
                        margin = float(e @ cents[s] - e @ cents[other])
                        r = results[method]
                        r["correct"] += margin > 0
                        r["margins"].append(margin)
                        c = r["by_condition"].setdefault(rec.meta["condition"], [0, 0])
                        c[0] += margin > 0
                        c[1] += 1
                windows += 1
                if windows >= args.max_windows:
                    break
            print(f"{rec.uri}: {windows} windows so far", file=sys.stderr)
            if windows >= args.max_windows:
                break
    n = 2 * windows
    summary = {"windows": windows, "embeddings": n, "speakers": len(cents), "methods": {}}
    for method, r in results.items():
        margins = np.array(r["margins"])
        summary["methods"][method] = {
            "correct %": 100 * r["correct"] / max(n, 1), "mean margin": float(margins.mean()),
            "correct % by condition": {c: round(100 * a / b, 1) for c, (a, b) in r["by_condition"].items()}}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
