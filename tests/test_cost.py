"""Model cost rows, window counts and the compute floor (diaropt.measure.cost), and the
per-file tables of a benchmark result (diaropt.measure.benchmark)."""
import math

import pytest
import torch

from diaropt.measure import benchmark, cost


def test_n_windows_matches_pyannote_sliding_windows():
    assert cost.n_windows(5.0, 1.0) == 1  # shorter than one window
    assert cost.n_windows(10.0, 1.0) == 1
    assert cost.n_windows(10.5, 1.0) == 2  # one full window and the padded last one
    assert cost.n_windows(25.0, 1.0) == 17
    assert cost.n_windows(25.0, 2.5) == 8
    assert cost.n_windows(25.0, 1.0, duration=5.0) == 22


def test_compute_floor():
    floor = cost.compute_floor([10.0, 25.0], seg_gflops=2.0, emb_gflops=1.0, peak_gflops=10.0,
                               wall_seconds=36.0, audio_seconds=35.0)
    assert floor["windows"] == 18
    assert floor["GFLOPs segmentation"] == 36.0 and floor["GFLOPs embedding"] == 54.0
    assert floor["floor at peak (s)"] == pytest.approx(9.0)
    assert floor["measured / floor"] == pytest.approx(4.0)
    assert floor["RTFx at the floor"] == pytest.approx(35.0 / 9.0)


def test_model_row_without_a_file():
    model = torch.nn.Linear(8, 4)
    row = cost.model_row("linear", model, None, torch.zeros(1, 8), repeats=2, warmup=0)
    assert row["model"] == "linear" and math.isnan(row["file (MB)"])
    assert row["parameters (M)"] == pytest.approx(36 / 1e6)
    assert row["GFLOPs / 10 s"] == pytest.approx(2 * 8 * 4 / 1e9)
    assert row["latency / 10 s (ms, median)"] > 0


def test_model_row_with_a_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 2_000_000)
    row = cost.model_row("linear", torch.nn.Linear(2, 2), path, torch.zeros(1, 2), repeats=1, warmup=0)
    assert row["file (MB)"] == 2.0


def _result():
    stages = {"segmentation": 1.0, "counting": 0.5, "embedding": 6.0, "clustering": 0.5, "total": 8.0}
    totals = {"stage_seconds": stages}
    for conv in ("strict", "fluidaudio"):
        totals |= {f"der_{conv}": 0.3, f"missed_{conv}": 0.1, f"false_{conv}": 0.05, f"confusion_{conv}": 0.15}
    files = [{"uri": "a", "source": "ami", "seconds": 60.0, "der_strict": 0.25, "der_fluidaudio": 0.2,
              "speakers_ref": 4, "speakers_hyp": 3, "rtfx": 7.5, "stages": stages}]
    return {"totals": totals, "files": files}


def test_benchmark_tables():
    r = _result()
    (row,) = benchmark.file_rows(r)
    assert row["DER strict %"] == 25.0 and row["speakers (ref/hyp)"] == "4/3" and row["embedding s"] == 6.0
    assert "counting s" not in row
    shares = benchmark.stage_shares(r["totals"])
    assert list(shares) == ["segmentation", "counting", "embedding", "clustering"]
    assert shares["embedding"] == 75.0
    errors = benchmark.error_breakdown(r["totals"])
    assert list(errors) == ["strict", "FluidAudio-style"]
    assert list(errors["strict"]) == ["DER", "missed detection", "false alarm", "confusion"]
    assert errors["FluidAudio-style"]["confusion"] == pytest.approx(15.0)
