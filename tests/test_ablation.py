"""Chapter 90's ablation tables: the frontier and the priority list, on fabricated totals."""
import pytest

from diaropt.book.claims import ChapterSummary
from diaropt.measure import ablation
from diaropt.measure.cost import n_windows


def totals(rtfx, der, rss=500.0):
    return {"rtfx": rtfx, "der_strict": der, "der_fluidaudio": der / 2, "peak_rss_mib": rss}


POINTS = {"reference": totals(2.0, 0.20), "optimized": totals(60.0, 0.204),
          "block trunk, step 2.5 s (torch)": totals(30.0, 0.203)}


def test_ablation_settings_name_known_variants():
    from diaropt.book.chapter import chapter_settings

    for profile in ("full", "smoke"):
        assert set(chapter_settings("optimized", profile)["ablation"]) <= set(ablation.ABLATION)
    steps = {label for _, after, before in ablation.STEPS_TAKEN for label in (after, before)}
    assert steps <= set(ablation.ABLATION) | {"reference", "optimized"}


def test_frontier_rows_are_relative_to_the_reference():
    rows = {r["variant"]: r for r in ablation.frontier_rows(POINTS, POINTS["reference"])}
    assert rows["reference"]["x reference"] == 1.0
    assert rows["optimized"]["x reference"] == 30.0
    assert rows["optimized"]["Δ strict vs reference (pts)"] == pytest.approx(0.4)
    assert rows["optimized"]["DER FluidAudio-style (%)"] == pytest.approx(10.2)


def test_priority_ranks_the_steps_and_skips_missing_summaries():
    table = ablation.priority_table(POINTS)
    onnx = "ONNX Runtime fp32 for both networks (and telephone values for band-limited files)"
    assert list(table["lever"]) == [onnx]  # the only step with both ends measured
    assert table.index[0] == 1
    assert table["speed-up over the previous step"].iloc[0] == pytest.approx(2.0)
    bat = ChapterSummary("batching", "smoke", {"pipe_gain": 3.0})
    qua = ChapterSummary("quantization", "smoke", {"speed_int8": {"segmentation": 1.2, "embedding": 0.8}, "der_int8_points": 0.3})
    table = ablation.priority_table(POINTS, bat, qua)
    assert list(table["lever"]) == ["batching (segmentation 8)", onnx,
                                    "fp16 / int8 arithmetic on CPU"]
    assert ablation.priority_table({}).empty


def test_windows_of_a_file():
    assert n_windows(8.0, 2.5) == 1
    assert n_windows(10.0, 2.5) == 1
    assert n_windows(20.0, 2.5) == 6  # starts 0, 2.5, ..., 10 and the padded last one


def test_speedups_over_a_partly_timed_reference_use_its_timed_files():
    """The reference (chapter 00) is timed on its first files only: a point's ratio to it is taken on
    those files (``rtfx_timed``), while ratios between whole-split points use the whole split."""
    ref = totals(2.0, 0.20) | {"files": 13, "timed_files": 5}
    harness = totals(8.0, 0.20) | {"files": 13, "rtfx_timed": 6.0}
    block = totals(24.0, 0.201) | {"files": 13, "rtfx_timed": 20.0}
    points = {"reference": ref, ablation.HARNESS_STEP: harness, "block trunk, step 1 s (torch)": block}
    rows = {r["variant"]: r for r in ablation.frontier_rows(points, ref)}
    assert rows[ablation.HARNESS_STEP]["x reference"] == pytest.approx(3.0)  # 6 / 2, not 8 / 2
    assert rows[ablation.HARNESS_STEP]["RTFx (its own files)"] == 8.0  # its own run, as measured
    steps = ablation.priority_table(points).set_index("lever")["speed-up over the previous step"]
    assert steps["do less embedding work: shared trunk, skip silent speakers"] == pytest.approx(3.0)
    assert steps["embed each second once: block trunk"] == pytest.approx(3.0)  # 24 / 8 on the whole split


def test_the_reference_is_timed_on_every_file_chapter_01_reuses():
    from diaropt.book.chapter import chapter_settings

    for profile in ("full", "smoke"):
        assert chapter_settings("fusion", profile)["trunk_files"] <= chapter_settings("baseline", profile)["timed_files"]


def test_frontier_changes_carry_a_paired_ci_when_the_points_have_per_file_rows():
    def rows(*errors):
        return [{"uri": f"f{i}", "der_strict": e / 10.0, "scored_strict": 10.0} for i, e in enumerate(errors)]

    ref = totals(2.0, 0.20) | {"per_file": rows(2, 2, 2, 2)}
    worse = totals(30.0, 0.30) | {"per_file": rows(3, 4, 3, 5)}  # more error on every file
    out = {r["variant"]: r for r in ablation.frontier_rows({"reference": ref, "worse": worse, "bare": totals(9.0, 0.2)}, ref)}
    assert out["reference"]["95 % CI of Δ"] == "[+0.00, +0.00]"
    low, high = (float(x) for x in out["worse"]["95 % CI of Δ"].strip("[]").split(","))
    assert 0 < low <= 17.5 <= high
    assert out["bare"]["95 % CI of Δ"] == "n/a"
