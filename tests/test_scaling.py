"""The long-recordings measurements (``measure.scaling``): their arithmetic, their labels and the
``scaling`` command's checks (the runs themselves are chapter 91's and the command's)."""
import pytest

from diaropt import cli
from diaropt.book.verdicts import target_verdict
from diaropt.measure import scaling
from diaropt.pipelines.bounded import window_count


def _rows():
    return [{"variant": "optimized", "minutes": m, "peak_rss_gib": 1.2 + 0.01 * m, "pipeline_s": 2.0 * m}
            for m in (1, 10, 30)] + [{"variant": "reference", "minutes": 1, "peak_rss_gib": 2.0, "pipeline_s": 50}]


def test_extrapolation_is_the_least_squares_line_and_needs_two_lengths():
    assert scaling.extrapolate(_rows(), "optimized", 240, "peak_rss_gib") == pytest.approx(1.2 + 2.4)
    assert scaling.extrapolate(_rows(), "optimized", 240, "pipeline_s") == pytest.approx(480)
    with pytest.raises(ValueError, match="two lengths"):
        scaling.extrapolate(_rows(), "reference", 240, "pipeline_s")


def test_window_counts_match_pyannotes_slide():
    # by hand: 60 min at a 2.5 s step is exactly 1436 steps past the first window (1437 windows, none
    # padded); 23.7 s holds 6 complete windows and a padded one; 7 s only a padded one
    assert window_count(3600 * 16000, 160000, 40000) == (1437, False)
    assert window_count(int(23.7 * 16000), 160000, 40000) == (6, True)
    assert window_count(7 * 16000, 160000, 40000) == (0, True)


def test_removed_arrays_follow_the_shapes():
    sizes = scaling.removed_arrays(60, clusters=5, step_seconds=2.5)
    assert sizes["decoded waveform (float32)"] == pytest.approx(3600 * 16000 * 4 / 1e9)
    assert sizes["reconstruction (float64, two while built)"] == pytest.approx(2 * 1437 * 589 * 5 * 8 / 1e9)


def test_speed_ratio_is_taken_at_a_length_both_ran():
    rows = [{"variant": "optimized", "minutes": m, "rtfx": r} for m, r in ((1, 30.0), (10, 36.0))]
    rows.append({"variant": "reference", "minutes": 1, "rtfx": 1.2})
    assert scaling.common_length_ratio(rows) == (1, pytest.approx(25.0))
    minutes, ratio = scaling.common_length_ratio(rows[:2])
    assert minutes != minutes and ratio != ratio  # NaN: no common length


def test_target_verdict_says_met_or_not_and_labels_extrapolation():
    assert target_verdict(1.6, 2.0, "GB", extrapolated_from=30) == \
        "met (extrapolated from runs up to 30 min: 1.60 GB <= 2 GB)"
    assert target_verdict(8.3, 3.0, "s") == "not met (8.30 s > 3 s)"
    assert target_verdict(36.0, 30.0, "x", at_most=False).startswith("met")
    assert target_verdict(float("nan"), 3.0, "s") == "not measured"


@pytest.mark.parametrize("argv,fragment", [(["--minutes", "0"], "--minutes"),
                                           (["--minutes", "5", "--variant", "fastest"], "unknown variant")])
def test_scaling_command_refuses_bad_options_before_any_run(argv, fragment, capsys, monkeypatch):
    monkeypatch.setattr(scaling, "run_scaling", lambda *a, **k: pytest.fail("ran despite a bad option"))
    rc = cli.main(["scaling", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and "Traceback" not in err


def test_steady_extrapolation_leaves_out_the_shortest_of_three_or_more():
    rows = [{"variant": "v", "minutes": m, "peak_rss_gib": g} for m, g in ((1, 1.0), (10, 1.3), (30, 1.4))]
    assert scaling.extrapolate(rows, "v", 50, "peak_rss_gib", steady=True) == pytest.approx(1.5)
    assert scaling.extrapolate(rows[1:], "v", 50, "peak_rss_gib", steady=True) == pytest.approx(1.5)  # two: both
    assert scaling.extrapolate(rows, "v", 50, "peak_rss_gib") > 1.5  # the shortest steepens the line
