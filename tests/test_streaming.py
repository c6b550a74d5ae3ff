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
