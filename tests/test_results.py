import json

import numpy as np
import pytest

from diaropt.book.results import load_json, save_json
from diaropt.book.verdicts import der_verdict, speed_verdict
from diaropt.measure.timing import summarize, time_call


@pytest.mark.parametrize("measured, low, expected", [(1.5, 1.5, "confirmed"), (1.44, 1.5, "confirmed"),
                                                     (1.3, 1.5, "partly"), (1.05, 1.2, "refuted"),
                                                     (0.8, 2.0, "refuted"), (3.5, 1.2, "confirmed")])
def test_speed_verdict(measured, low, expected):
    assert speed_verdict(measured, low) == expected


def test_der_verdict():
    assert der_verdict(0.4, 0.5) == "confirmed"
    assert der_verdict(0.6, 0.5) == "refuted"


def test_summarize_median_and_spread():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert t.median == 3.0 and t.min == 1.0 and t.max == 5.0 and t.iqr == pytest.approx(3.0)


def test_time_call_runs_warmup_and_repeats():
    calls = []
    t = time_call(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and t.repeats == 3 and len(t.samples) == 3


def test_json_roundtrip_with_numpy(tmp_path):
    path = save_json({"a": np.float32(1.5), "b": np.arange(3), "c": float("nan")}, tmp_path / "r.json")
    data = load_json(path)
    assert data["a"] == 1.5 and data["b"] == [0, 1, 2] and np.isnan(data["c"])
    assert json.loads(path.read_text().replace("NaN", "null"))["c"] is None
