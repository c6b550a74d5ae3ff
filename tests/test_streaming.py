"""Online diarization (technique 7): offline agreement, piece-size invariance, stable labels,
bounded memory, clear errors."""
from collections import deque

import numpy as np
import pytest
import torch

from diaropt.core import data, metrics, models
from diaropt.core.audio import as_pyannote_input
from diaropt.core.errors import AudioError
from diaropt.pipelines.streaming import OnlineDiarizer, SpeakerTracker, StreamError, WindowResult, local_speaker_masks, pieces_of

STEP = 0.016875
DUR = 0.0619375


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def window_result(start, frames, active, embeddings):
    act = np.zeros((frames, len(active)), np.float32)
    for k, (a, b) in enumerate(active):
        act[a:b, k] = 1
    return WindowResult(start, act, np.asarray(embeddings, np.float32))


def test_tracker_keeps_labels_when_local_order_changes():
    alice, bob = unit([1, 0, 0]), unit([0, 1, 0])
    tracker = SpeakerTracker(0.3, STEP, DUR, latency=1.0)
    turns = []
    for w in range(12):
        # local slot order flips every window; each window is 100 frames, step 50 frames
        pair = [(alice, (0, 50)), (bob, (50, 100))]
        if w % 2:
            pair = pair[::-1]
        res = window_result(w * 50 * STEP, 100, [p[1] for p in pair],
                            [p[0] + 0.05 * np.random.default_rng(w).standard_normal(3) for p in pair])
        tracker.update(res)
        turns += tracker.finalize((w * 50 + 100) * STEP)
    turns += tracker.close()
    labels = {label for _, label in turns}
    assert labels == {"SPEAKER_00", "SPEAKER_01"}
    # alice always speaks the first half of a window: frames [50w, 50w + 50) -> same label for all of them
    first_label = {label for seg, label in turns if seg.start < 50 * STEP}
    assert first_label == {"SPEAKER_00"}


def test_tracker_opens_new_speaker_above_threshold_and_caps_count():
    tracker = SpeakerTracker(0.3, STEP, DUR, latency=1.0, max_speakers=3)
    for w in range(6):
        e = np.eye(6, dtype=np.float32)[w]  # orthogonal voices: distance 1 > threshold
        tracker.update(window_result(w * 100 * STEP, 100, [(0, 100)], [e]))
    assert len(tracker.sums) == 3


def test_tracker_caps_speakers_opened_in_the_same_window_without_nan():
    """The cap can be reached inside one window: the speaker beyond it joins the closest centroid
    (no centroid may be an empty sum, whose normalisation divides by zero)."""
    tracker = SpeakerTracker(0.3, STEP, DUR, latency=1.0, max_speakers=2)
    e = np.eye(3, dtype=np.float32)
    close_to_second = unit(np.array([0.1, 1.0, 0.2], dtype=np.float32))
    with np.errstate(all="raise"):
        mapping = tracker.assign(np.stack([e[0], e[1], close_to_second]), np.ones((100, 3), np.float32), 0)
    assert mapping == {0: 0, 1: 1, 2: 1} and len(tracker.sums) == 2
    assert np.isfinite(tracker.centroids()).all()


def test_tracker_memory_is_bounded_on_a_long_stream():
    tracker = SpeakerTracker(0.3, STEP, DUR, latency=5.0)
    rng = np.random.default_rng(0)
    voices = [unit(rng.standard_normal(8)) for _ in range(4)]
    widths = []
    for w in range(2000):  # 2000 windows of 589 frames, step 1 s
        spk = rng.choice(4, size=2, replace=False)  # two different people per window
        res = window_result(w * 1.0 - 10.0, 589, [(0, 300), (250, 589)], [voices[spk[0]], voices[spk[1]]])
        tracker.update(res)
        tracker.finalize(w * 1.0)
        widths.append(len(tracker.count))
    assert max(widths) <= int(10.0 / STEP) + 2
    assert len(tracker.sums) <= 4


def test_tracker_emits_exact_turn_boundaries():
    tracker = SpeakerTracker(0.3, STEP, DUR, latency=1.0)
    voice = unit([1, 2, 3])
    for w in range(5):
        # a speaker active on global frames [200, 400) seen through windows of 589 frames, step 100
        a, b = 200 - 100 * w, 400 - 100 * w
        tracker.update(window_result(w * 100 * STEP, 589, [(max(a, 0), max(b, 0))], [voice]))
    turns = tracker.close()
    assert len(turns) == 1
    seg, _ = turns[0]
    assert seg.start == pytest.approx(200 * STEP + DUR / 2 - STEP / 2)
    assert seg.end == pytest.approx(400 * STEP + DUR / 2 - STEP / 2)


def test_local_speaker_masks_drop_overlap_only_when_enough_clean_frames():
    act = np.zeros((10, 3), np.float32)
    act[0:6, 0] = 1
    act[4:10, 1] = 1  # overlap on frames 4, 5
    act[4:5, 2] = 1  # speaker 2 only speaks in overlap
    m = local_speaker_masks(act, min_clean_frames=2)
    assert m[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert m[2].tolist() == act[:, 2].tolist()  # no clean frames: keeps the overlapped ones


# ---- real models ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seg_emb(provisioned):
    return models.load_segmentation(), models.choose_embedding("campplus").model


@pytest.fixture(scope="module")
def sample():
    return data.pyannote_sample()


@pytest.mark.slow
def test_one_piece_stream_equals_offline_segmentation(seg_emb, sample):
    from pyannote.audio import Inference

    seg, emb = seg_emb
    d = OnlineDiarizer.from_models(seg, emb, step=2.0, latency=10.0, threshold=0.4)
    d.windows = deque()
    d.feed(sample.waveform)
    d.finish()
    offline = Inference(seg, step=2.0, skip_aggregation=True, batch_size=4)(as_pyannote_input(sample.waveform))
    full = {round(w.start, 3): w.activity for w in d.windows if w.start >= 0}
    compared = 0
    for c, chunk in enumerate(offline.data):
        start = round(offline.sliding_window[c].start, 3)
        if start in full and offline.sliding_window[c].end <= sample.duration:
            assert np.array_equal(full[start], chunk), f"window at {start} s differs"
            compared += 1
    assert compared >= 10


@pytest.mark.slow
def test_piece_size_does_not_change_the_result_and_labels_are_stable(seg_emb, sample):
    seg, emb = seg_emb
    outs = []
    for piece in (sample.duration, 0.37):
        d = OnlineDiarizer.from_models(seg, emb, step=2.0, latency=6.0, threshold=0.4)
        turns = list(d.stream(pieces_of(sample.waveform, piece)))
        outs.append(turns)
    assert outs[0] == outs[1]
    hyp = d.history
    assert len(hyp.labels()) == len(sample.reference.labels()) == 2
    assert metrics.der(sample.reference, hyp, sample.uem) < 0.15


@pytest.mark.slow
def test_bad_pieces_get_clear_errors(seg_emb):
    seg, emb = seg_emb
    d = OnlineDiarizer.from_models(seg, emb, step=1.0, latency=2.0)
    with pytest.raises(AudioError, match="sample rate"):
        d.feed(torch.zeros(1, 800), sample_rate=8000)
    with pytest.raises(AudioError, match="empty"):
        d.feed(torch.zeros(1, 0))
    with pytest.raises(AudioError, match="NaN"):
        d.feed(torch.full((1, 100), float("nan")))
    with pytest.raises(AudioError, match="channels"):
        d.feed(torch.zeros(2, 100))
    with pytest.raises(StreamError, match="no audio"):
        d.finish()
    with pytest.raises(StreamError, match="finished"):
        d.feed(torch.zeros(1, 100))
    with pytest.raises(StreamError, match="latency"):
        OnlineDiarizer.from_models(seg, emb, step=2.0, latency=1.0)
    with pytest.raises(StreamError, match="step"):
        OnlineDiarizer.from_models(seg, emb, step=0.0, latency=1.0)


def test_tracker_rejects_a_nonsense_threshold():
    with pytest.raises(StreamError):
        SpeakerTracker(0.0, STEP, DUR, latency=1.0)


# ---- the chapter's functions (diaropt.techniques.streaming) ------------------------------------

def test_sweep_scores_the_replayed_hypothesis_of_every_pair():
    from pyannote.core import Annotation, Segment, Timeline

    from diaropt.pipelines.streaming import replay
    from diaropt.techniques import streaming as chapter

    alice, bob = unit([1, 0, 0]), unit([0, 1, 0])
    windows = [window_result(w * 50 * STEP, 100, [(0, 50), (50, 100)], [alice, bob]) for w in range(8)]
    end = (7 * 50 + 100) * STEP
    ref = Annotation(uri="synthetic")
    ref[Segment(0, 50 * STEP)] = "A"
    ref[Segment(50 * STEP, end)] = "B"
    rec = data.Recording("synthetic", torch.zeros(1, int(end * 16000)), ref, Timeline([Segment(0, end)]),
                         "simulated", "test")

    class Analyzer:
        frame_step, frame_duration = STEP, DUR

    rows = chapter.sweep(Analyzer(), [rec], {"synthetic": windows}, [0.3, 0.6], [1.0, 2.0])
    assert [(r["threshold"], r["latency"]) for r in rows] == [(0.3, 1.0), (0.3, 2.0), (0.6, 1.0), (0.6, 2.0)]
    for r in rows:
        hyp = replay(windows, threshold=r["threshold"], latency=r["latency"], frame_step=STEP, frame_duration=DUR,
                     uri="synthetic")
        assert r["der_strict"] == pytest.approx(metrics.der(ref, hyp, rec.uem))
        assert r["files"] == 1
    table = chapter.sweep_rows(rows, "threshold")
    assert list(table[0]) == ["threshold", "DER strict (%)", "DER FluidAudio-style (%)", "confusion strict (%)"]
    assert table[0]["DER strict (%)"] == pytest.approx(100 * rows[0]["der_strict"])


def test_frozen_settings_say_where_they_come_from(monkeypatch):
    from diaropt.core.config import ConfigError
    from diaropt.techniques import streaming as chapter

    params, note = chapter.frozen_settings("campplus")
    assert {"threshold", "step", "latency"} <= set(params) and "campplus" in note

    real = chapter.online_params

    def no_block(embedding, config=None):
        if embedding == "resnet34":
            raise ConfigError("no online block for resnet34")
        return real(embedding, config)

    monkeypatch.setattr(chapter, "online_params", no_block)
    params, note = chapter.frozen_settings("resnet34")
    assert params == real("campplus")
    assert "no online settings for resnet34" in note and "campplus" in note


def test_chunk_rows_and_verdicts_compare_with_offline():
    import pandas as pd

    from diaropt.measure.stats import der_change
    from diaropt.techniques import streaming as chapter

    def files(*ders):  # per-file score rows, 100 s of speech each
        return [{"uri": f"f{k}", "der_strict": d, "scored_strict": 100.0} for k, d in enumerate(ders)]

    run = {"latency": 5.0, "emission_delay_median_s": 4.0, "piece_median_s": 0.05, "piece_p95_s": 0.2, "rtfx": 8.0,
           "timed_files": 3, "files": files(0.30, 0.32, 0.28), "totals": {"der_strict": 0.30, "der_fluidaudio": 0.20}}
    offline = {"files": files(0.25, 0.26, 0.24), "totals": {"der_strict": 0.25}}
    rows = chapter.chunk_rows({1.0: run}, offline)
    assert rows[0]["worst algorithmic latency (s)"] == 6.0
    assert rows[0]["vs offline, strict (pts)"] == pytest.approx(5.0)  # every file 4-6 points worse
    assert 4.0 <= rows[0]["CI low"] <= rows[0]["CI high"] <= 6.0
    assert rows[0]["compute per chunk, p95 (ms)"] == pytest.approx(200.0)
    worse = der_change(offline["files"], files(0.60, 0.62, 0.58))
    v = chapter.verdicts(rows[0], worse)
    assert v["stream_verdict_realtime"].startswith("confirmed")
    assert v["stream_verdict_snippet"].startswith("refuted")
    assert v["s1_budget"] == "well inside the 1 s budget"
    row = pd.DataFrame(rows).set_index("chunk (s)").loc[1.0]  # as the chapter passes it
    assert chapter.verdicts(row, worse) == v
    slow = dict(rows[0], RTFx=0.5)
    same = der_change(offline["files"], files(0.20, 0.30, 0.25))  # the interval holds zero
    assert chapter.verdicts(slow, same)["stream_verdict_realtime"].startswith("refuted")
    assert chapter.verdicts(slow, same)["stream_verdict_snippet"].startswith("confirmed")


def test_every_takes_the_windows_of_a_larger_chunk():
    from diaropt.techniques import streaming as chapter

    # a 1 s stream of 7.5 s: windows end at 1, 2, ..., 7 s and the tail at 7.5 s
    ends = [1, 2, 3, 4, 5, 6, 7, 7.5]
    windows = [window_result(e - 10.0, 4, [(0, 4)], [unit([1, 0])]) for e in ends]
    assert [w.start + 10 for w in chapter.every(windows, 2.0, 1.0)] == [2, 4, 6, 7.5]
    assert [w.start + 10 for w in chapter.every(windows, 5.0, 1.0)] == [5, 7.5]
    with pytest.raises(ValueError, match="whole multiple"):
        chapter.every(windows, 1.5, 1.0)


@pytest.mark.slow
def test_larger_chunks_replayed_from_the_first_equal_live_streams(seg_emb, sample):
    from diaropt.pipelines.streaming import WindowAnalyzer
    from diaropt.techniques import streaming as chapter

    seg, emb = seg_emb
    runs = chapter.chunk_runs(WindowAnalyzer(seg, emb), [sample], [1.0, 2.0, 5.0],
                              {"threshold": 0.4, "latency": 3.0}, timed_files=1)  # raises unless replay == live
    assert runs[2.0]["timed_files"] == runs[1.0]["timed_files"] == 1
    assert runs[5.0]["latency"] == 5.0 and runs[2.0]["latency"] == 3.0
    assert runs[2.0]["pieces"] < runs[1.0]["pieces"]


def test_the_onnx_window_analysis_matches_torch_on_a_real_window(provisioned):
    """build_analyzer's ONNX Runtime option (segmentation and the CAM++ trunk as sessions): the
    same local activity and embeddings within float32 rounding of the torch analysis (the
    default), on a real 10 s window with two speakers."""
    from diaropt.core.constants import WINDOW_SAMPLES
    from diaropt.pipelines.streaming import build_analyzer

    choice = models.choose_embedding("campplus")
    window = data.pyannote_sample().waveform[:, :WINDOW_SAMPLES]
    onnx, torch_ = build_analyzer(choice, runtime="onnxruntime"), build_analyzer(choice)
    assert onnx.segment_fn is not onnx.segmentation and torch_.segment_fn is torch_.segmentation
    a, b = onnx(window, 0.0), torch_(window, 0.0)
    assert np.array_equal(a.activity, b.activity) and np.isfinite(a.embeddings).any()
    same = np.isfinite(a.embeddings).all(axis=1)
    assert np.array_equal(same, np.isfinite(b.embeddings).all(axis=1))
    cos = (a.embeddings[same] * b.embeddings[same]).sum(1) / np.linalg.norm(a.embeddings[same], axis=1) / np.linalg.norm(
        b.embeddings[same], axis=1)
    assert cos.min() > 0.999
    with pytest.raises(StreamError, match="runtime"):
        build_analyzer(choice, runtime="coreml")
