"""Chapter 05, streaming: the guide's snippet, and how the online
diarizer (``diaropt.pipelines.streaming``) trades latency for accuracy.

- ``GuideStreamingDiarizationModel`` is the guide's ``StreamingDiarizationModel`` as published:
  it prepends 0.5 s of context to each chunk and returns the segmentation model's output, with
  *local* speaker indices only; ``guide_streaming_annotation`` scores exactly that.
- ``evaluate_stream`` streams recordings in pieces and measures DER, RTFx, per-piece compute
  and emission delay; ``record_windows`` / ``sweep`` replay recorded window analyses to sweep
  threshold and latency without recomputing the networks.
"""
from __future__ import annotations

import numpy as np
import torch
from pyannote.core import Annotation, Segment
from tqdm.auto import tqdm

from ..core.constants import SAMPLE_RATE
from ..core.metrics import DERAccumulator
from ..pipelines.streaming import OnlineDiarizer, WindowAnalyzer, pieces_of, replay, run_stream


def record_windows(analyzer: WindowAnalyzer, recordings, step: float, progress: bool = True) -> dict:
    """Live-stream each recording once and keep its window analyses: {uri: [WindowResult]}."""
    out = {}
    for rec in tqdm(recordings, desc=f"stream step={step}s", disable=not progress):
        d = OnlineDiarizer(analyzer, step=step, latency=step, threshold=0.5, keep_history=False)
        out[rec.uri] = run_stream(d, rec.waveform, step, rec.uri, record_windows=True).windows
    return out


def sweep(analyzer: WindowAnalyzer, recordings, windows: dict, thresholds, latencies) -> list[dict]:
    """DER (both conventions) of every (threshold, latency) pair, by replaying recorded windows."""
    rows = []
    for thr in thresholds:
        for lat in latencies:
            acc = DERAccumulator()
            for rec in recordings:
                hyp = replay(windows[rec.uri], threshold=thr, latency=lat, frame_step=analyzer.frame_step,
                             frame_duration=analyzer.frame_duration, uri=rec.uri)
                acc.add(rec.uri, rec.reference, hyp, rec.uem)
            rows.append({"threshold": thr, "latency": lat} | acc.totals())
    return rows


def evaluate_stream(analyzer: WindowAnalyzer, recordings, *, step: float, latency: float, threshold: float,
                    progress: bool = True) -> dict:
    """Stream every recording in pieces of ``step`` seconds; DER, RTFx, per-piece compute latency
    and the recorded window analyses (for replays)."""
    acc, pieces, delays, windows, audio = DERAccumulator(), [], [], {}, 0.0
    for rec in tqdm(recordings, desc=f"stream {step:g} s pieces", disable=not progress):
        d = OnlineDiarizer(analyzer, step=step, latency=latency, threshold=threshold)
        r = run_stream(d, rec.waveform, step, rec.uri, record_windows=True)
        acc.add(rec.uri, rec.reference, r.hypothesis, rec.uem)
        pieces += r.piece_seconds
        delays += r.delays
        windows[rec.uri] = r.windows
        audio += rec.duration
    p = np.asarray(pieces)
    return {"step": step, "latency": latency, "threshold": threshold, "audio_seconds": audio,
            "rtfx": audio / p.sum(), "piece_median_s": float(np.median(p)), "piece_p95_s": float(np.percentile(p, 95)),
            "emission_delay_median_s": float(np.median(delays)) if delays else float("nan"),
            "pieces": len(p), "totals": acc.totals(), "windows": windows}


# ---- the guide's snippet ---------------------------------------------------------------------

class GuideStreamingDiarizationModel(torch.nn.Module):
    """The guide's ``StreamingDiarizationModel``: its code as published (comments dropped)."""

    def __init__(self, base_model, context_size=50):
        super().__init__()
        self.model = base_model
        self.context_size = context_size
        self.register_buffer('context', torch.zeros(1, 1, context_size * 160))

    def forward(self, audio_chunk, update_context=True):
        audio_with_context = torch.cat([self.context, audio_chunk], dim=-1)
        output = self.model(audio_with_context)
        if update_context:
            self.context = audio_chunk[..., -self.context_size * 160:]
        return output


def guide_streaming_annotation(segmentation, waveform: torch.Tensor, piece: float, uri: str = "guide") -> Annotation:
    """Run the guide's snippet piece by piece and label each piece's frames with the model's
    *local* speaker index, which is all the snippet provides (no tracking across pieces)."""
    from .fusion import powerset

    model = GuideStreamingDiarizationModel(segmentation.eval())
    ps = powerset()
    hyp = Annotation(uri=uri)
    t = 0.0
    with torch.inference_mode():
        for p in pieces_of(waveform, piece):
            act = ps.to_multilabel(model(p[None]))[0].numpy()  # frames of context + piece
            n = p.shape[-1] / SAMPLE_RATE
            keep = act[-max(1, int(round(act.shape[0] * n / (n + model.context_size * 160 / SAMPLE_RATE)))):]
            step = n / keep.shape[0]
            for k in range(keep.shape[1]):
                on = np.flatnonzero(keep[:, k])
                if len(on):
                    for run in np.split(on, np.flatnonzero(np.diff(on) > 1) + 1):
                        hyp[Segment(t + run[0] * step, t + (run[-1] + 1) * step)] = f"local_{k}"
            t += n
    return hyp
