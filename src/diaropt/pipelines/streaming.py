"""Online diarization (the streaming chapter) with speaker labels that stay consistent over
the stream.

Audio arrives in pieces of any size. Every ``step`` seconds the diarizer analyses the latest
10 s window (zero-padded on the left while the stream is younger than 10 s):

1. ``WindowAnalyzer``: segmentation-3.0 -> up to 3 local speakers, and one embedding per
   local speaker pooled from one shared trunk pass (masks without overlap, as pyannote builds
   them).
2. ``SpeakerTracker``: local speakers are matched to a bounded set of global speaker
   centroids (Hungarian assignment on cosine distance; a distance above ``threshold`` opens a
   new speaker; centroids are running means of unit embeddings). A local speaker with too
   little speech for a reliable embedding inherits the global speaker it overlaps most in the
   region already aggregated. Mapped activities are averaged over all windows covering a
   frame; a frame becomes final ``latency`` seconds after its time and is then emitted as part
   of a closed ``(Segment, label)`` turn.

Memory is bounded: the last 10 s of audio, the frames not yet final, ``max_speakers``
centroids and the currently open turns. Feeding the same audio in different piece sizes gives
the same output (windows depend on ``step`` only).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from pyannote.core import Annotation, Segment
from scipy.optimize import linear_sum_assignment

from ..core.audio import validate_waveform
from ..core.config import online_params
from ..core.constants import SAMPLE_RATE, WINDOW_SAMPLES
from ..core.errors import DiaroptError
from ..core.models import EmbeddingChoice, choose_embedding, load_segmentation
from .reference import models_record
from .registry import Variant


class StreamError(DiaroptError):
    """The stream was used out of order (e.g. fed after ``finish``) or configured wrongly."""


def check_online_settings(step: float, latency: float, threshold: float) -> None:
    """The diarizer's settings rules (``StreamError`` otherwise), cheap enough to check before any
    model is loaded: ``step`` in (0, 10] s, ``latency`` between ``step`` and the 10 s window,
    ``threshold`` a cosine distance in (0, 2)."""
    window = WINDOW_SAMPLES / SAMPLE_RATE
    if not 0.0 < step <= window:
        raise StreamError(f"step must be in (0, {window:g}] seconds, got {step}")
    if not step <= latency <= window:
        raise StreamError(f"latency must be between step ({step} s) and the {window:g} s window, got {latency}")
    if not 0.0 < threshold < 2.0:
        raise StreamError(f"threshold is a cosine distance in (0, 2), got {threshold}")


def online_settings(embedding: str, step: float | None = None, latency: float | None = None,
                    threshold: float | None = None) -> dict:
    """``{step, latency, threshold}``: the given values, the frozen online settings of
    ``embedding`` (``campplus`` or ``resnet34``) for the others; checked together. The config
    is not read when all three are given."""
    given = {"step": step, "latency": latency, "threshold": threshold}
    cfg = online_params(embedding) if None in given.values() else {}
    out = {k: float(v if v is not None else cfg[k]) for k, v in given.items()}
    check_online_settings(**out)
    return out


def local_speaker_masks(activity: np.ndarray, min_clean_frames: int) -> np.ndarray:
    """pyannote's embedding masks for one window: (frames, speakers) binary -> (speakers, frames).

    Overlapped frames are left out when a speaker keeps more than ``min_clean_frames`` clean ones."""
    clean = activity * (activity.sum(axis=1, keepdims=True) < 2)
    use_clean = clean.sum(axis=0, keepdims=True) > min_clean_frames
    return np.where(use_clean, clean, activity).T.astype(np.float32)


@dataclass
class WindowResult:
    start: float  # seconds; negative for left-padded windows at the start of a stream
    activity: np.ndarray  # (frames, local speakers) in {0, 1}
    embeddings: np.ndarray  # (local speakers, dim); NaN rows: too little speech to embed
    seconds: dict = field(default_factory=dict)  # compute time per stage


class WindowAnalyzer:
    """Segmentation + one embedding per local speaker for a 10 s window.

    ``integrated(waveforms (1, 1, N), masks (1, S, F)) -> (1, S, D)`` defaults to the shared
    trunk of the embedding model (``pipelines.trunks.trunk_and_pool``); ``segment_fn(waveforms
    (1, 1, N)) -> log-probabilities`` to the segmentation model itself (``build_analyzer`` passes
    ONNX Runtime sessions for both)."""

    def __init__(self, segmentation, embedding_model=None, integrated=None, min_embed_seconds: float = 0.5,
                 segment_fn=None):
        from pyannote.audio.utils.powerset import Powerset

        from .trunks import trunk_and_pool

        if integrated is None:
            if embedding_model is None:
                raise StreamError("WindowAnalyzer needs an embedding model or an integrated embedding function")
            frames_of, pool = trunk_and_pool(embedding_model)

            def integrated(w, m):
                return pool(frames_of(w), m)
        self.segmentation = segmentation.eval()
        self.segment_fn = segment_fn or self.segmentation
        self.integrated = integrated
        self.powerset = Powerset(3, 2)  # segmentation-3.0: 3 local speakers, at most 2 at once
        self.num_frames = segmentation.num_frames(WINDOW_SAMPLES)
        self.frame_step = segmentation.receptive_field.step
        self.frame_duration = segmentation.receptive_field.duration
        self.min_embed_frames = int(round(min_embed_seconds / self.frame_step))
        self.min_clean_frames = int(np.ceil(self.num_frames * 400 / WINDOW_SAMPLES))  # pyannote's rule, 400 samples

    def segment(self, window: torch.Tensor) -> np.ndarray:
        """(1, N) window -> (frames, 3) binary local speaker activity."""
        with torch.inference_mode():
            log_probs = self.segment_fn(window[None])
            return self.powerset.to_multilabel(log_probs)[0].numpy()

    def __call__(self, window: torch.Tensor, start: float) -> WindowResult:
        t0 = time.perf_counter()
        activity = self.segment(window)
        t1 = time.perf_counter()
        masks = local_speaker_masks(activity, self.min_clean_frames)
        enough = masks.sum(axis=1) >= self.min_embed_frames
        emb = np.full((activity.shape[1], 1), np.nan, dtype=np.float32)
        if enough.any():
            with torch.inference_mode():
                emb = np.asarray(self.integrated(window[None], torch.from_numpy(masks[None])), dtype=np.float32)[0]
            emb[~enough] = np.nan
        t2 = time.perf_counter()
        return WindowResult(start, activity, emb, {"segmentation": t1 - t0, "embedding": t2 - t1})


def build_analyzer(choice: EmbeddingChoice, runtime: str = "torch") -> WindowAnalyzer:
    """The window analysis of the streaming diarizer: in torch (the default), or with
    ``runtime="onnxruntime"`` segmentation-3.0 and the CAM++ trunk as ONNX Runtime sessions
    (``portable.onnx``, through its export cache) and the pooling in torch. One 10 s window at a
    time, ONNX Runtime was about 10 % slower than torch on the 2-core AMD EPYC of the book's builds
    (interleaved, 3 rounds of 20 windows), so torch stays the default; an embedding model without
    an ONNX trunk always runs in torch."""
    segmentation = load_segmentation()
    model = choice.model
    if runtime == "onnxruntime" and hasattr(model, "campplus"):
        from ..portable.onnx import ort_segmentation, ort_trunk

        trunk, pool = ort_trunk(model), model.campplus.pool_and_embed
        return WindowAnalyzer(segmentation, integrated=lambda w, m: pool(trunk(w), m),
                              segment_fn=ort_segmentation(segmentation))
    if runtime not in ("onnxruntime", "torch"):
        raise StreamError(f"runtime must be 'onnxruntime' or 'torch', got {runtime!r}")
    return WindowAnalyzer(segmentation, model)


class SpeakerTracker:
    """Incremental clustering, aggregation over overlapping windows and finalization."""

    def __init__(self, threshold: float, frame_step: float, frame_duration: float, latency: float,
                 max_speakers: int = 20, onset: float = 0.5):
        if not 0.0 < threshold < 2.0:
            raise StreamError(f"threshold is a cosine distance in (0, 2), got {threshold}")
        self.threshold, self.latency, self.max_speakers, self.onset = threshold, latency, max_speakers, onset
        self.frame_step, self.frame_duration = frame_step, frame_duration
        self.sums: list[np.ndarray] = []  # per global speaker: sum of unit embeddings
        self.first = 0  # global index of the first frame not yet final
        self.votes = np.zeros((max_speakers, 0), np.float32)  # frames [first, first + width)
        self.count = np.zeros(0, np.float32)
        self.open: dict[int, float] = {}  # speaker -> start time of its open turn

    # -- clustering ------------------------------------------------------------------------
    def centroids(self) -> np.ndarray:
        if not self.sums:
            return np.zeros((0, 0), np.float32)
        c = np.stack(self.sums)
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    def assign(self, embeddings: np.ndarray, activity: np.ndarray, offset: int) -> dict[int, int]:
        """local speaker -> global speaker for one window (and update the centroids)."""
        mapping: dict[int, int] = {}
        has_emb = [k for k in range(embeddings.shape[0]) if np.isfinite(embeddings[k]).all()
                   and activity[:, k].any()]
        unit = {k: embeddings[k] / np.linalg.norm(embeddings[k]) for k in has_emb}
        cents = self.centroids()
        if has_emb and len(cents):
            dist = 1.0 - np.stack([unit[k] for k in has_emb]) @ cents.T
            rows, cols = linear_sum_assignment(dist)
            for r, c in zip(rows, cols):
                if dist[r, c] <= self.threshold:
                    mapping[has_emb[r]] = int(c)
        opened = set()
        for k in has_emb:
            if k in mapping:
                continue
            if len(self.sums) < self.max_speakers:  # a new speaker, its centroid its first embedding
                self.sums.append(unit[k].copy())
                mapping[k] = len(self.sums) - 1
                opened.add(k)
            else:  # bounded: the closest existing speaker absorbs it (every centroid is a unit vector)
                mapping[k] = int(np.argmax(self.centroids() @ unit[k]))
        for k, g in mapping.items():
            if k not in opened:
                self.sums[g] = self.sums[g] + unit[k]
        # speakers too short to embed: continuity with what is already aggregated
        for k in range(activity.shape[1]):
            if k in mapping or not activity[:, k].any():
                continue
            overlap = self._overlap_with_aggregate(activity[:, k], offset)
            used = set(mapping.values())
            for g in np.argsort(-overlap):
                if overlap[g] <= 0:
                    break
                if g not in used:
                    mapping[k] = int(g)
                    break
        return mapping

    def _overlap_with_aggregate(self, act: np.ndarray, offset: int) -> np.ndarray:
        lo, hi = max(offset, self.first), min(offset + len(act), self.first + len(self.count))
        if hi <= lo:
            return np.zeros(len(self.sums))
        seg = act[lo - offset: hi - offset]
        agg = self.votes[: len(self.sums), lo - self.first: hi - self.first] / np.maximum(
            self.count[lo - self.first: hi - self.first], 1.0)
        return (agg >= self.onset).astype(np.float32) @ seg

    # -- aggregation -----------------------------------------------------------------------
    def update(self, result: WindowResult) -> None:
        offset = int(round(result.start / self.frame_step))
        mapping = self.assign(result.embeddings, result.activity, offset)
        end = offset + result.activity.shape[0]
        width = end - self.first
        if width > len(self.count):
            grow = width - len(self.count)
            self.votes = np.pad(self.votes, ((0, 0), (0, grow)))
            self.count = np.pad(self.count, (0, grow))
        lo = max(offset, self.first)  # frames already final receive no more votes
        if lo >= end:
            return
        rows = slice(lo - offset, end - offset)
        cols = slice(lo - self.first, end - self.first)
        self.count[cols] += 1.0
        for k, g in mapping.items():
            self.votes[g, cols] += result.activity[rows, k]

    def frame_time(self, index: int) -> float:
        """Centre of global frame ``index`` (pyannote's receptive-field convention)."""
        return index * self.frame_step + self.frame_duration / 2

    def finalize(self, now: float) -> list[tuple[Segment, str]]:
        """Emit the turns that ended before ``now - latency``; drop their frames."""
        last = int(np.floor((now - self.latency - self.frame_duration / 2) / self.frame_step))
        n = min(last - self.first + 1, len(self.count))
        return self._emit(n) if n > 0 else []

    def close(self) -> list[tuple[Segment, str]]:
        """Emit everything (end of stream)."""
        out = self._emit(len(self.count))
        end = self.frame_time(self.first) - self.frame_step / 2
        for g, start in sorted(self.open.items()):
            if end > start:
                out.append((Segment(start, end), f"SPEAKER_{g:02d}"))
        self.open.clear()
        return out

    def _emit(self, n: int) -> list[tuple[Segment, str]]:
        out = []
        active = (self.votes[:, :n] / np.maximum(self.count[:n], 1.0)) >= self.onset
        active &= self.count[:n] > 0
        for i in range(n):
            t = self.frame_time(self.first + i) - self.frame_step / 2
            for g in range(len(self.sums)):
                if active[g, i] and g not in self.open:
                    self.open[g] = t
                elif not active[g, i] and g in self.open:
                    out.append((Segment(self.open.pop(g), t), f"SPEAKER_{g:02d}"))
        self.votes = self.votes[:, n:]
        self.count = self.count[n:]
        self.first += n
        return out


class OnlineDiarizer:
    """Feed audio pieces, get speaker turns as they become final.

    >>> d = OnlineDiarizer.from_models(segmentation, embedding, step=1.0, latency=5.0, threshold=0.3)
    >>> for turn, label in d.stream(pieces): ...
    """

    def __init__(self, analyzer: WindowAnalyzer, *, step: float = 1.0, latency: float = 5.0,
                 threshold: float = 0.3, max_speakers: int = 20, keep_history: bool = True):
        check_online_settings(step, latency, threshold)
        self.analyzer = analyzer
        self.step, self.latency = step, latency
        self.step_samples = int(round(step * SAMPLE_RATE))
        self.tracker = SpeakerTracker(threshold, analyzer.frame_step, analyzer.frame_duration, latency,
                                      max_speakers=max_speakers)
        self.buffer = torch.zeros(1, WINDOW_SAMPLES)  # the last 10 s (zeros before the stream began)
        self.received = 0  # samples fed so far
        self.next_end = self.step_samples  # end sample of the next window to analyse
        self.finished = False
        self.keep_history = keep_history
        self.history = Annotation(uri="stream")
        self.windows: deque[WindowResult] | None = None  # set to a deque to record analyses
        self.seconds = {"segmentation": 0.0, "embedding": 0.0, "clustering": 0.0}

    @classmethod
    def from_models(cls, segmentation, embedding_model, integrated=None, **kwargs) -> OnlineDiarizer:
        return cls(WindowAnalyzer(segmentation, embedding_model, integrated), **kwargs)

    @property
    def now(self) -> float:
        return self.received / SAMPLE_RATE

    def _analyse(self, end: int) -> None:
        """Analyse the buffer: the 10 s window ending at sample ``end`` (= ``received``)."""
        result = self.analyzer(self.buffer, (end - WINDOW_SAMPLES) / SAMPLE_RATE)
        t0 = time.perf_counter()
        self.tracker.update(result)
        self.seconds["clustering"] += time.perf_counter() - t0
        for k in ("segmentation", "embedding"):
            self.seconds[k] += result.seconds[k]
        if self.windows is not None:
            self.windows.append(result)

    def _record(self, turns):
        if self.keep_history:
            for seg, label in turns:
                self.history[seg] = label
        return turns

    def feed(self, piece, sample_rate: int = SAMPLE_RATE) -> list[tuple[Segment, str]]:
        """Add audio ((samples,) or (1, samples) float at 16 kHz); return newly final turns."""
        if self.finished:
            raise StreamError("the stream is finished; create a new OnlineDiarizer")
        wav = validate_waveform(piece, sample_rate, name="stream piece", min_duration=0.0)
        out = []
        pos = 0
        n = wav.shape[-1]
        while pos < n:  # never let more than one window's worth of new audio into the buffer unanalysed
            take = min(n - pos, self.next_end - self.received)
            self.buffer = torch.cat([self.buffer[:, take:], wav[:, pos: pos + take]], dim=1)
            self.received += take
            pos += take
            if self.received == self.next_end:
                self._analyse(self.next_end)
                self.next_end += self.step_samples
                t0 = time.perf_counter()
                out += self.tracker.finalize(self.now)
                self.seconds["clustering"] += time.perf_counter() - t0
        return self._record(out)

    def finish(self) -> list[tuple[Segment, str]]:
        """End of stream: analyse the tail (a window ending at the last sample) and emit all."""
        if self.finished:
            raise StreamError("finish() was already called")
        self.finished = True
        if self.received == 0:
            raise StreamError("no audio was fed")
        if self.received != self.next_end - self.step_samples:
            self._analyse(self.received)
        return self._record(self.tracker.close())

    def stream(self, pieces, sample_rate: int = SAMPLE_RATE):
        """Generator: feed each piece, yield final ``(Segment, label)`` turns, then the tail."""
        for piece in pieces:
            yield from self.feed(piece, sample_rate)
        yield from self.finish()


def pieces_of(waveform: torch.Tensor, seconds: float):
    """Cut a (1, N) waveform into consecutive pieces of ``seconds`` (the last may be shorter)."""
    size = int(round(seconds * SAMPLE_RATE))
    for i in range(0, waveform.shape[-1], size):
        yield waveform[:, i: i + size]


# ---- running a stream ------------------------------------------------------------------------

@dataclass
class StreamRun:
    """What one streamed file produced: turns, compute seconds per piece, emission delays."""

    hypothesis: Annotation
    piece_seconds: list[float]  # compute time spent in each feed() (and finish())
    delays: list[float]  # per emitted turn: stream time at emission - end of the turn
    seconds: dict
    windows: list[WindowResult]


def run_stream(diarizer: OnlineDiarizer, waveform: torch.Tensor, piece: float, uri: str = "stream",
               record_windows: bool = False) -> StreamRun:
    """Stream a waveform through ``diarizer`` in pieces of ``piece`` seconds, timing each feed."""
    if record_windows:
        diarizer.windows = deque()
    times, delays = [], []
    for p in pieces_of(waveform, piece):
        t0 = time.perf_counter()
        turns = diarizer.feed(p)
        times.append(time.perf_counter() - t0)
        delays += [diarizer.now - seg.end for seg, _ in turns]
    t0 = time.perf_counter()
    diarizer.finish()
    times.append(time.perf_counter() - t0)
    hyp = diarizer.history
    hyp.uri = uri
    return StreamRun(hyp, times, delays, dict(diarizer.seconds), list(diarizer.windows or []))


def replay(windows: list[WindowResult], *, threshold: float, latency: float, frame_step: float,
           frame_duration: float, max_speakers: int = 20, uri: str = "stream") -> Annotation:
    """Re-run only the tracker over recorded window analyses (same code path as live, no model
    compute): for tuning the threshold or sweeping the latency cheaply."""
    tracker = SpeakerTracker(threshold, frame_step, frame_duration, latency, max_speakers=max_speakers)
    hyp = Annotation(uri=uri)
    for w in windows:
        tracker.update(w)
        for seg, label in tracker.finalize(w.start + WINDOW_SAMPLES / SAMPLE_RATE):
            hyp[seg] = label
    for seg, label in tracker.close():
        hyp[seg] = label
    return hyp


# ---- the benchmark variant -------------------------------------------------------------------

def streaming_variant(embedding: EmbeddingChoice | str = "auto", step: float | None = None,
                      latency: float | None = None, threshold: float | None = None, integrated=None) -> Variant:
    """The online diarizer fed in pieces of ``step`` seconds (frozen online settings by default;
    the config is not read when ``step``, ``latency`` and ``threshold`` are all given). The
    settings are checked before any model is loaded."""

    choice = choose_embedding(embedding) if isinstance(embedding, str) else embedding
    settings = online_settings(choice.name, step, latency, threshold)
    step, latency, threshold = settings["step"], settings["latency"], settings["threshold"]
    analyzer = build_analyzer(choice) if integrated is None else WindowAnalyzer(load_segmentation(), choice.model, integrated)

    def run(rec):
        d = OnlineDiarizer(analyzer, step=step, latency=latency, threshold=threshold)
        r = run_stream(d, rec.waveform, step, rec.uri)
        s = r.seconds
        return r.hypothesis, {"segmentation": s["segmentation"], "counting": 0.0, "embedding": s["embedding"],
                              "clustering": s["clustering"], "total": sum(r.piece_seconds)}

    return Variant("streaming", f"online diarizer, pieces of {step:g} s, latency {latency:g} s, "
                   f"threshold {threshold:g} ({choice.name})", run, models=models_record(choice)
                   | {"online": {"step": step, "latency": latency, "threshold": threshold}})
