"""Chapter 02 (batching): windows, the guide's snippet, the fixed batched model, the tables."""
import pytest
import torch

from diaropt.core import models
from diaropt.core.constants import LOCAL_SPEAKERS, SAMPLE_RATE, SEGMENTATION_FRAMES, WINDOW_SAMPLES
from diaropt.techniques import batching


def test_tiled_windows_are_shifted_crops_that_wrap():
    waveform = torch.arange(WINDOW_SAMPLES + 3 * SAMPLE_RATE, dtype=torch.float32)[None]
    w = batching.tiled_windows(waveform, 5)
    assert w.shape == (5, 1, WINDOW_SAMPLES)
    starts = [int(x[0, 0]) for x in w]
    assert starts == [0, SAMPLE_RATE, 2 * SAMPLE_RATE, 0, SAMPLE_RATE]  # wraps after 3 s of room
    assert torch.equal(w[1, 0], waveform[0, SAMPLE_RATE: SAMPLE_RATE + WINDOW_SAMPLES])


def test_guide_result_reports_the_error():
    def seg(x):
        return torch.zeros(x.shape[0], SEGMENTATION_FRAMES, 7)

    def emb(w, masks):
        raise RuntimeError("shape mismatch\nsecond line")

    assert batching.guide_result(seg, emb, torch.zeros(2, 1, 10)) == "RuntimeError: shape mismatch"


def test_throughput_curve_interleaves_the_sizes_and_takes_per_round_ratios():
    """Every round calls each batch size once, in order, after one warm-up call each; a size's
    speed-up is the median of its per-round ratios of seconds per item against the first size."""
    import time

    calls = []

    def fn(x):
        calls.append(x.shape[0])
        time.sleep(0.002 * (1 + x.shape[0] // 4))  # batch 4 costs twice batch 1's call: 2x per item

    rows = batching.throughput_curve(fn, lambda b: torch.ones(b, 3), [1, 4], repeats=3, progress=False, min_seconds=0)
    assert calls == [1, 4] + [1, 4] * 3
    table = batching.curve_table(rows)
    assert list(table.index) == [1, 4] and table.loc[1, "speed-up vs batch 1"] == 1.0
    assert 1.4 < table.loc[4, "speed-up vs batch 1"] < 2.6 and table.loc[4, "rounds"] == 3
    assert all(r["items_per_s"] == pytest.approx(r["batch"] / r["seconds"]) for r in rows)
    best, ratio = batching.best_ratio(table)
    assert best == 4 and ratio.median == table.loc[4, "speed-up vs batch 1"] and ratio.repeats == 3
    calls.clear()  # a quick call is repeated within each sample until it fills min_seconds
    batching.throughput_curve(fn, lambda b: torch.ones(b, 3), [1, 4], repeats=2, progress=False, min_seconds=0.02)
    assert calls.count(1) > calls.count(4) > 3  # about 10 and 5 calls a sample, after one warm-up call each


def test_best_ratio_reports_an_unstable_spread():
    import pandas as pd

    table = pd.DataFrame([{"batch": 1, "speed-up vs batch 1": 1.0, "speed-up low": 1.0, "speed-up high": 1.0, "rounds": 3},
                          {"batch": 8, "speed-up vs batch 1": 3.0, "speed-up low": 1.0, "speed-up high": 60.0,
                           "rounds": 3}]).set_index("batch")
    best, ratio = batching.best_ratio(table)
    assert best == 8 and ratio.unstable
    from diaropt.book.verdicts import ratio_verdict
    assert ratio_verdict(ratio, 2.0) == "unstable: not judged"


def test_batched_model_equals_per_speaker_calls(provisioned):
    from diaropt.core import data

    segmentation, embedding = models.load_segmentation(), models.load_campplus()
    model = batching.BatchedDiarizationModel(segmentation, embedding)
    x = batching.tiled_windows(data.pyannote_sample().waveform, 2)
    emb, masks, err = batching.batched_vs_per_speaker(model, embedding, x)
    assert emb.shape == (2, LOCAL_SPEAKERS, embedding.dimension)
    assert masks.shape == (2, SEGMENTATION_FRAMES, LOCAL_SPEAKERS)
    assert err < 1e-3


def test_smoke_settings_are_a_subset_of_full():
    full, smoke = batching.SETTINGS["full"], batching.SETTINGS["smoke"]
    assert set(smoke["batch_sizes"]) <= set(full["batch_sizes"]) and smoke["batch_sizes"][0] == 1
    assert smoke["pipeline_files"] <= full["pipeline_files"]
