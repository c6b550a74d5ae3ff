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


def test_curve_table_speedup_over_batch_one():
    rows = [{"batch": 1, "items_per_s": 10.0}, {"batch": 4, "items_per_s": 25.0}]
    table = batching.curve_table(rows)
    assert list(table.index) == [1, 4]
    assert table.loc[4, "speed-up vs batch 1"] == 2.5


def test_throughput_curve_counts_items():
    rows = batching.throughput_curve(lambda x: x * 2, lambda b: torch.ones(b, 3), [1, 2], repeats=1, warmup=0,
                                     progress=False, items_per_batch=lambda b: 10 * b)
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["items_per_s"] == pytest.approx(10 * r["batch"] / r["seconds"]) for r in rows)


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
