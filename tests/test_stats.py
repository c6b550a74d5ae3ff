"""Confidence intervals (measure.stats) and the CI-aware DER verdict (book.verdicts)."""
import math

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline

from diaropt.book.claims import Measurement, claim, verdict
from diaropt.book.verdicts import der_verdict
from diaropt.core.metrics import DERAccumulator
from diaropt.measure.benchmark import compare_rows
from diaropt.measure.stats import der_change, speed_ratio
from diaropt.pipelines.registry import STAGES


def rows(errors, totals, convention="strict"):
    return [{"uri": f"f{i}", f"der_{convention}": e / t, f"scored_{convention}": t}
            for i, (e, t) in enumerate(zip(errors, totals))]


def test_der_change_is_the_corpus_level_difference_hand_computed():
    a = rows([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    b = rows([2.0, 2.0, 6.0], [10.0, 20.0, 30.0])
    c = der_change(a, b)
    # (10 - 6) / 60 seconds of speech = 6.67 points
    assert c.points == pytest.approx(100 * 4 / 60)
    assert c.low <= c.points <= c.high and c.files == 3


def test_identical_outputs_give_a_zero_width_interval():
    a = rows([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    c = der_change(a, a)
    assert (c.points, c.low, c.high) == (0.0, 0.0, 0.0)


def test_a_consistent_change_excludes_zero_and_a_mixed_one_does_not():
    rng = np.random.default_rng(1)
    totals = rng.uniform(20, 60, 30)
    base = rng.uniform(0.1, 0.3, 30) * totals
    worse = base + 0.02 * totals  # every file 2 points worse
    c = der_change(rows(base, totals), rows(worse, totals))
    assert c.points == pytest.approx(2.0) and c.low > 0.5
    mixed = base + rng.choice([-1, 1], 30) * 0.05 * totals  # files disagree: about no change on average
    m = der_change(rows(base, totals), rows(mixed, totals))
    assert m.low < 0 < m.high


def test_der_change_refuses_different_files_and_old_rows():
    a = rows([1.0, 2.0], [10.0, 20.0])
    b = rows([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="different files"):
        der_change(a, b)
    with pytest.raises(ValueError, match="scored_strict"):
        der_change([{"uri": "x", "der_strict": 0.1}], [{"uri": "x", "der_strict": 0.1}])


def test_one_file_has_no_interval():
    c = der_change(rows([1.0], [10.0]), rows([2.0], [10.0]))
    assert c.points == pytest.approx(10.0) and math.isnan(c.low) and "no CI" in str(c)


def test_score_rows_carry_the_scored_speech_the_interval_needs():
    ref = Annotation()
    ref[Segment(0, 10)] = "A"
    ref[Segment(10, 20)] = "B"
    hyp = Annotation()
    hyp[Segment(0, 12)] = "x"
    hyp[Segment(12, 20)] = "y"
    row = DERAccumulator().add("u", ref, hyp, Timeline([Segment(0, 20)]))
    assert row["scored_strict"] == pytest.approx(20.0) and row["scored_fluidaudio"] == pytest.approx(19.0)


def test_compare_rows_print_the_interval():
    a = {"totals": {"der_strict": 0.1, "der_fluidaudio": 0.1, "missed_strict": 0, "false_strict": 0,
                    "confusion_strict": 0, "rtfx": 2.0, "peak_rss_mib": 1.0, "audio_seconds": 60.0,
                    "stage_seconds": dict.fromkeys(STAGES, 1.0)}}
    b = {k: dict(v) for k, v in a.items()}
    a["files"] = rows([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    for f in a["files"]:
        f.update(der_fluidaudio=f["der_strict"], scored_fluidaudio=f["scored_strict"])
    b["files"] = [dict(f) for f in a["files"]]
    out = {r["metric"]: r["B vs A"] for r in compare_rows(a, b)}
    assert out["DER strict (%)"] == "+0.00 pts [+0.00, +0.00]"
    del b["files"][0]
    assert "no CI" in {r["metric"]: r["B vs A"] for r in compare_rows(a, b)}["DER strict (%)"]
    # stage times per minute of the audio each run timed: A timed 30 s of its 60 s, B all 60 s
    a["totals"] |= {"timed_audio_seconds": 30.0, "timed_files": 1, "files": 3}
    embedding = {r["metric"]: r for r in compare_rows(a, b)}["embedding (s per audio minute)"]
    assert (embedding["A"], embedding["B"], embedding["B vs A"]) == (2.0, 1.0, "2.00x faster")
    from diaropt.measure.benchmark import compare_warnings

    a |= {"environment": {"cpu": "x"}, "models": {}}
    b |= {"environment": {"cpu": "x"}, "models": {}}
    assert any("A's speed comes from its first 1 of 3 files" in w for w in compare_warnings(a, b))


def test_speed_ratio_median_spread_and_instability():
    r = speed_ratio([10.0, 10.2, 9.8], [5.0, 5.0, 5.0])
    assert r.median == pytest.approx(2.0) and not r.unstable
    noisy = speed_ratio([10.0, 20.0, 10.0], [5.0, 5.0, 5.0])
    assert noisy.unstable and "UNSTABLE" in str(noisy)
    assert speed_ratio([10.0, 10.0], [5.0, 5.0]).unstable  # fewer than 3 runs are never judged
    with pytest.raises(ValueError):
        speed_ratio([1.0, 2.0], [1.0])


@pytest.mark.parametrize("delta, ci, bound, word", [
    (0.2, (-0.1, 0.4), 0.5, "confirmed"),       # the whole interval under the bound
    (0.4, (-0.3, 1.1), 0.5, "within noise"),    # straddles the bound: this test set cannot tell
    (1.5, (0.8, 2.2), 0.5, "refuted"),          # the whole interval above it
    (0.0, (0.0, 0.0), 0.0, "confirmed"),        # "no change", and none measured
    (0.1, (-0.2, 0.4), 0.0, "within noise"),
    (-0.6, (-0.9, -0.2), 0.0, "refuted"),       # a real change refutes "no change", either way
    (0.6, None, 0.5, "refuted"),                # no interval: the point estimate decides
])
def test_der_verdict_uses_the_interval(delta, ci, bound, word):
    assert der_verdict(delta, bound, ci) == word


def test_the_claims_table_verdict_uses_the_measurement_interval():
    c = claim("FP16 Quantization", "der")
    assert str(verdict(c, Measurement(0.3, "x", ci=(-0.2, 0.9)))) == "within noise"
    assert str(verdict(c, Measurement(0.3, "x", ci=(-0.2, 0.4)))) == "confirmed"
    assert "95 % CI" in verdict(c, Measurement(0.3, "x", ci=(-0.2, 0.4))).reason


def _result(files):
    stages = dict.fromkeys(STAGES, 0.0)
    return {"created": "t", "models": {"embedding_name": "campplus"}, "totals": {"peak_rss_mib": 100.0},
            "files": [{"uri": u, "seconds": sec, "speakers_ref": 2, "speakers_hyp": h,
                       "stages": stages | {"embedding": wall / 2, "total": wall},
                       **{f"{p}_{c}": rate for c in ("strict", "fluidaudio")
                          for p, rate in (("der", der), ("missed", der / 2), ("false", 0.0), ("confusion", der / 2))},
                       "scored_strict": scored, "scored_fluidaudio": scored / 2}
                      for u, sec, wall, der, scored, h in files]}


def test_subset_result_recomputes_corpus_totals_by_hand():
    from diaropt.measure.benchmark import subset_result

    r = _result([("a", 30.0, 10.0, 0.10, 20.0, 2), ("b", 60.0, 20.0, 0.40, 40.0, 3), ("c", 60.0, 99.0, 0.9, 50.0, 1)])
    s = subset_result(r, ["a", "b"])
    assert [f["uri"] for f in s["files"]] == ["a", "b"]
    t = s["totals"]
    assert t["der_strict"] == pytest.approx((2.0 + 16.0) / 60.0)  # errors summed / speech summed
    assert t["missed_strict"] == pytest.approx(9.0 / 60.0)
    assert t["rtfx"] == pytest.approx(90.0 / 30.0) and t["stage_seconds"]["embedding"] == pytest.approx(15.0)
    assert t["speakers_hyp_mean"] == 2.5 and t["files"] == 2
    with pytest.raises(ValueError, match="no rows"):
        subset_result(r, ["a", "zz"])


def test_baseline_reference_is_checked_before_reuse(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from diaropt.book import results

    monkeypatch.setenv("DIAROPT_RESULTS", str(tmp_path))
    recs = [SimpleNamespace(uri="a"), SimpleNamespace(uri="b")]
    with pytest.raises(FileNotFoundError, match="SLUG=baseline"):
        results.baseline_reference("smoke", "campplus", recs)
    results.save_result("reference-smoke", _result([("a", 30.0, 10.0, 0.1, 20.0, 2), ("b", 60.0, 20.0, 0.4, 40.0, 3)]))
    assert len(results.baseline_reference("smoke", "campplus", recs)["files"]) == 2
    with pytest.raises(ValueError, match="embedding"):
        results.baseline_reference("smoke", "resnet34", recs)
    with pytest.raises(ValueError, match="did not score"):
        results.baseline_reference("smoke", "campplus", recs + [SimpleNamespace(uri="c")])


def _fake_recordings(n: int):
    import torch

    from diaropt.core.data import Recording

    recs = []
    for i in range(n):
        ref = Annotation(uri=f"r{i}")
        ref[Segment(0, 4)] = "A"
        ref[Segment(4, 8 + i)] = "B"
        recs.append(Recording(f"r{i}", torch.zeros(1, 16000 * (10 + i)), ref, Timeline([Segment(0, 10 + i)]),
                              "simulated", "test"))
    return recs


def _fake_variant(name: str, wrong: set[str] = frozenset(), seconds: float = 1.0):
    from diaropt.pipelines.registry import Variant

    def run(rec):
        hyp = Annotation(uri=rec.uri)
        cut = 6.0 if rec.uri in wrong else 4.0  # a wrong boundary on the files in ``wrong``
        hyp[Segment(0, cut)] = "s0"
        hyp[Segment(cut, rec.duration - 2)] = "s1"
        return hyp, {s: seconds for s in STAGES}

    return Variant(name, name, run, models={"embedding_name": "campplus"})


def test_reference_with_harness_takes_speed_from_the_reference_and_der_from_the_harness_on_all_files():
    from diaropt.measure.benchmark import reference_with_harness

    recs = _fake_recordings(4)
    ref, harn = reference_with_harness(recs, timed_files=2, profile="smoke", embedding="campplus",
                                       reference=_fake_variant("reference", seconds=5.0),
                                       harness=_fake_variant("harness", seconds=1.0))
    assert [f["scored_by"] for f in ref["files"]] == ["reference", "reference", "harness", "harness"]
    assert all("stages" in f for f in ref["files"][:2]) and not any("stages" in f for f in ref["files"][2:])
    t = ref["totals"]
    # DER over all four files, equal to the harness's; speed over the two timed ones at 5 s per stage call
    assert t["der_strict"] == pytest.approx(harn["totals"]["der_strict"]) and t["files"] == 4
    assert t["timed_audio_seconds"] == pytest.approx(10 + 11) and t["audio_seconds"] == pytest.approx(10 + 11 + 12 + 13)
    assert t["wall_seconds"] == pytest.approx(2 * 5.0) and t["rtfx"] == pytest.approx(21 / 10)
    assert t["harness"] == "harness" and t["harness_identical_files"] == 2
    with pytest.raises(ValueError, match="not timed"):  # chapter 01 may only reuse timed rows
        from diaropt.measure.benchmark import subset_result
        subset_result(ref, ["r0", "r3"])


def test_a_harness_that_differs_from_the_reference_on_a_timed_file_is_refused():
    from diaropt.measure.benchmark import reference_with_harness

    recs = _fake_recordings(3)
    with pytest.raises(ValueError, match=r"does not reproduce the reference on \['r1'\]"):
        reference_with_harness(recs, timed_files=2, profile="smoke", embedding="campplus",
                               reference=_fake_variant("reference"), harness=_fake_variant("harness", wrong={"r1"}))


def test_a_harness_run_that_scored_every_file_is_reused_and_checked_against_the_reference():
    from diaropt.measure.benchmark import reference_with_harness, run_benchmark

    recs = _fake_recordings(4)
    # chapter 00's harness run over the whole split (here one that is wrong on r3, an untimed file)
    scored = run_benchmark(_fake_variant("threads", wrong={"r3"}), recordings=recs, progress=False)
    calls = []
    harness = _fake_variant("harness", seconds=1.0)
    harness_run = harness.run
    harness.run = lambda rec: calls.append(rec.uri) or harness_run(rec)
    ref, harn = reference_with_harness(recs, timed_files=2, profile="smoke", embedding="campplus", scored=scored,
                                       reference=_fake_variant("reference", seconds=5.0), harness=harness)
    assert set(calls) == {"r0", "r1"}  # the harness runs on the timed files only (warm-up included)
    for run, own in ((ref, "reference"), (harn, "harness")):
        assert [f["scored_by"] for f in run["files"]] == [own, own, "harness", "harness"]
        t = run["totals"]
        assert t["files"] == 4 and t["timed_files"] == 2 and t["der_strict"] == pytest.approx(scored["totals"]["der_strict"])
        assert t["timed_audio_seconds"] == pytest.approx(21) and t["audio_seconds"] == pytest.approx(46)
    assert ref["totals"]["rtfx"] == pytest.approx(21 / 10) and harn["totals"]["rtfx"] == pytest.approx(21 / 2)
    assert ref["files"][3]["der_strict"] > 0 and ref["totals"]["harness_identical_files"] == 2
    wrong_on_timed = run_benchmark(_fake_variant("threads", wrong={"r1"}), recordings=recs, progress=False)
    with pytest.raises(ValueError, match=r"does not reproduce the reference on \['r1'\]"):
        reference_with_harness(recs, timed_files=2, profile="smoke", embedding="campplus", scored=wrong_on_timed,
                               reference=_fake_variant("reference"), harness=_fake_variant("harness"))
    with pytest.raises(ValueError, match="did not score"):
        reference_with_harness(recs, timed_files=2, profile="smoke", embedding="campplus", scored=scored | {
            "files": scored["files"][:3]}, reference=_fake_variant("reference"), harness=_fake_variant("harness"))


def test_by_source_gives_corpus_level_der_and_speaker_count_accuracy_per_source():
    from diaropt.measure.benchmark import by_source

    def row(uri, source, err, scored, ref, hyp):
        return {"uri": uri, "source": source, "seconds": 60.0, "der_strict": err / scored, "scored_strict": scored,
                "der_fluidaudio": err / scored / 2, "scored_fluidaudio": scored, "speakers_ref": ref, "speakers_hyp": hyp}

    files = [row("a", "ami", 3.0, 30.0, 4, 2), row("b", "ami", 1.0, 10.0, 3, 3), row("c", "simulated", 5.0, 50.0, 2, 3)]
    out = {r["source"]: r for r in by_source({"files": files})}
    assert out["ami"]["DER strict (%)"] == pytest.approx(100 * 4 / 40)  # corpus level, not the mean of 10 % and 10 %
    assert out["all"]["DER strict (%)"] == pytest.approx(100 * 9 / 90)
    assert out["ami"]["speaker count exact (%)"] == 50 and out["ami"]["too few"] == 1 and out["ami"]["too many"] == 0
    assert out["simulated"]["too many"] == 1 and out["all"]["files"] == 3 and out["all"]["minutes"] == 3.0
    for f, condition in zip(files, ("ami", "ami", "telephone")):
        f["condition"] = condition
    files.append(row("d", "simulated", 2.0, 20.0, 2, 2) | {"condition": "clean"})
    out = {r["condition"]: r for r in by_source({"files": files}, key="condition")}
    assert set(out) == {"ami", "telephone", "clean", "all"}
    assert out["telephone"]["DER strict (%)"] == pytest.approx(10.0) and out["telephone"]["too many"] == 1
    assert out["clean"]["speaker count exact (%)"] == 100 and out["all"]["files"] == 4


def test_interleaved_calls_alternate_the_variants_round_by_round():
    from diaropt.measure.timing import interleaved_calls

    order = []
    samples = interleaved_calls([lambda: order.append("a"), lambda: order.append("b")], rounds=3, warmup=1)
    assert order == ["a", "b"] * 4  # one warm-up round, then three recorded ones
    assert [len(s) for s in samples] == [3, 3] and all(t >= 0 for s in samples for t in s)


def test_interleaved_ratios_repeat_quick_calls_and_compare_with_the_first_variant():
    import time

    from diaropt.measure.timing import interleaved_ratios

    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.02)

    def fast():
        calls["fast"] += 1
        time.sleep(0.005)

    timings, ratios, samples = interleaved_ratios({"slow": slow, "fast": fast}, rounds=3, min_seconds=0.05,
                                                  with_samples=True)
    # two unrecorded calls each, then 3 samples of ceil(0.05 / second call) back-to-back calls:
    # at most 3 calls of >= 20 ms fill 50 ms, at least 4 of about 5 ms (sleep may overshoot)
    assert 2 + 3 * 1 <= calls["slow"] <= 2 + 3 * 3 and calls["fast"] >= 2 + 3 * 4
    assert ratios["fast"].repeats == 3 and [len(v) for v in samples.values()] == [3, 3]
    assert 2.0 < ratios["fast"].median < 4.5  # 20 ms against about 5 ms, per call
    assert 0.015 < timings["slow"].median < 0.04  # seconds per call, not per sample
    # the ratios pair round i with round i (not sorted samples)
    assert ratios["fast"].median == sorted(a / b for a, b in zip(samples["slow"], samples["fast"]))[1]
