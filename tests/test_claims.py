"""The guide's claims and the verdict rule (chapter 90), on fabricated chapter summaries.

The guide table must come out exactly as chapter 90 built it in notebook code before the
refactor (``_legacy_rows`` is that code, kept here as the reference)."""
import math

import pytest

from diaropt.book import claims
from diaropt.book.claims import Claim, Measurement, verdict
from diaropt.book.results import fmt
from diaropt.book.verdicts import der_verdict, speed_verdict

NAN = float("nan")


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_RESULTS", str(tmp_path))
    return tmp_path


def quantization(**kw):
    d = {"embedding": "campplus-test", "size_fp16": {"segmentation": 0.5, "embedding": 0.51},
         "size_int8": {"segmentation": 0.26, "embedding": 0.27},
         "speed_fp16": {"segmentation": 0.31, "embedding": 0.42}, "speed_int8": {"segmentation": 1.25, "embedding": 0.9},
         "der_fp16_points": 0.02, "der_int8_points": 0.3, "der_4bit_points": 2.5}
    return d | kw


def fusion(**kw):
    d = {"embedding": "campplus-test", "seg_model_speedup": 1.01, "emb_model_speedup": 1.05, "trunk_e2e_speedup": 2.4,
         "skip_e2e_speedup": 2.6, "der_delta_points": 0.0, "decode_share_percent": 0.4}
    return d | kw


def batching(**kw):
    d = {"embedding": "campplus-test", "seg_gain": 1.3, "emb_gain": 1.1, "pipe_gain": 1.05, "seg_best_batch": 8,
         "emb_best_batch": 1, "der_max_error": 2e-7}
    return d | kw


def pruning(**kw):
    d = {"embedding": "campplus-test", "ratio": 0.3, "params_removed_pct": {"segmentation": 49.0, "embedding": 51.0},
         "speed": {"segmentation": 1.6, "embedding": 1.4}, "der_after_kd_points": {"segmentation": 0.8, "embedding": 3.1},
         "guide_snippet_size_ratio": {"segmentation": 1.0, "embedding": 1.0}, "kd_steps": 2}
    return d | kw


def write(profile="smoke", **summaries):
    for slug, values in summaries.items():
        claims.save_summary(slug, profile, values)


def _legacy_rows(qua, fus, bat, pru, speedup, der_delta):
    """Chapter 90's table as the notebook built it before the refactor (verbatim)."""
    def pair(d, spec=".2f"):
        return f"seg {fmt(d['segmentation'], spec)}x, emb {fmt(d['embedding'], spec)}x"

    return [
        {"optimization": "FP16 quantization", "claimed speed": "1.5x",
         "measured speed (CPU)": pair(qua["speed_fp16"]) + " on CPU; CoreML: macOS only",
         "speed verdict": f"not measurable here ({claims.COREML_SPEED})",
         "claimed size": "-50 %", "measured size": f"{fmt(100 * (1 - max(qua['size_fp16'].values())), '.0f')} % smaller",
         "claimed DER": "< 0.5 %", "measured DER": f"{fmt(qua['der_fp16_points'], '+.2f')} pts",
         "DER verdict": der_verdict(qua["der_fp16_points"], 0.5)},
        {"optimization": "INT8 quantization", "claimed speed": "2-3x",
         "measured speed (CPU)": pair(qua["speed_int8"]) + " on CPU; CoreML: macOS only",
         "speed verdict": f"not measurable here ({claims.COREML_SPEED})",
         "claimed size": "-75 %", "measured size": f"{fmt(100 * (1 - max(qua['size_int8'].values())), '.0f')} % smaller",
         "claimed DER": "< 1 %", "measured DER": f"{fmt(qua['der_int8_points'], '+.2f')} pts (8-bit palettes)",
         "DER verdict": der_verdict(qua["der_int8_points"], 1.0) if qua["der_int8_points"] == qua["der_int8_points"]
         else "not measured (smoke)"},
        {"optimization": "Operation fusion", "claimed speed": "1.2x",
         "measured speed (CPU)": f"models: seg {fmt(fus['seg_model_speedup'])}x, emb {fmt(fus['emb_model_speedup'])}x; "
                                 f"pipeline (shared trunk, silent speakers skipped): {fmt(fus['skip_e2e_speedup'])}x",
         "speed verdict": speed_verdict(fus["skip_e2e_speedup"], 1.2),
         "claimed size": "0 %", "measured size": "0 %", "claimed DER": "0 %",
         "measured DER": f"{fmt(fus['der_delta_points'], '+.2f')} pts", "DER verdict": der_verdict(abs(fus["der_delta_points"]), 0.0)},  # noqa: E501
        {"optimization": "Batch processing", "claimed speed": "2-4x*",
         "measured speed (CPU)": f"seg {fmt(bat['seg_gain'])}x, emb {fmt(bat['emb_gain'])}x; pipeline {fmt(bat['pipe_gain'])}x",
         "speed verdict": speed_verdict(bat["pipe_gain"], 2.0), "claimed size": "0 %", "measured size": "0 %",
         "claimed DER": "0 %", "measured DER": f"identical (max error {fmt(bat['der_max_error'], '.1e')})",
         "DER verdict": "confirmed"},
        {"optimization": "Pruning (30%)", "claimed speed": "1.3x",
         "measured speed (CPU)": pair(pru["speed"]) + " (structural, ratio 0.3); the guide's snippet: no change",
         "speed verdict": speed_verdict(min(pru["speed"].values()), 1.3) + " (structural only)", "claimed size": "-30 %",
         "measured size": f"seg {fmt(pru['params_removed_pct']['segmentation'], '.0f')} %, emb "
                          f"{fmt(pru['params_removed_pct']['embedding'], '.0f')} % fewer parameters (structural); snippet: 0 %",
         "claimed DER": "< 1 %",
         "measured DER": f"seg {fmt(pru['der_after_kd_points']['segmentation'], '+.2f')}, emb "
                         f"{fmt(pru['der_after_kd_points']['embedding'], '+.2f')} pts after distillation (emb: threshold not re-tuned)",  # noqa: E501
         "DER verdict": der_verdict(max(pru["der_after_kd_points"].values()), 1.0)},
        {"optimization": "all of the above, composed (this chapter)", "claimed speed": "—",
         "measured speed (CPU)": f"{fmt(speedup, '.1f')}x end to end", "speed verdict": "target (20x) " + ("met" if speedup >= 20 else "not met"),  # noqa: E501
         "claimed size": "—", "measured size": "0 % (fp32 weights)", "claimed DER": "—",
         "measured DER": f"{fmt(der_delta, '+.2f')} pts", "DER verdict": "target (+0.5) " + ("met" if der_delta <= 0.5 else "not met")},  # noqa: E501
    ]


# ------------------------------------------------------------------------------------------
# the table, transcribed once


def test_claims_transcribe_the_guides_table():
    assert claims.rows() == ["FP16 Quantization", "INT8 Quantization", "Operation Fusion", "Batch Processing", "Pruning (30%)"]
    assert len(claims.CLAIMS) == 15
    as_written = {(c.row, c.quantity): c.claimed for c in claims.CLAIMS}
    assert as_written[("FP16 Quantization", "speed")] == "1.5x"
    assert as_written[("INT8 Quantization", "speed")] == "2-3x"
    assert as_written[("Batch Processing", "speed")] == "2-4x*"
    assert as_written[("INT8 Quantization", "size")] == "75%"
    assert as_written[("Pruning (30%)", "size")] == "30%"
    assert as_written[("FP16 Quantization", "der")] == "< 0.5%"
    assert as_written[("Operation Fusion", "der")] == "0%"
    assert all(c.section == "Performance Benchmarks" for c in claims.CLAIMS)
    c = claims.claim("INT8 Quantization", "speed")
    assert (c.low, c.high, c.technique, c.chapter) == (2.0, 3.0, "1. Model Quantization", "quantization")
    assert claims.claim("Batch Processing", "speed").footnote == "*When processing multiple files"
    with pytest.raises(KeyError):
        claims.claim("Pruning (50%)", "speed")
    with pytest.raises(ValueError):
        Claim("x", "latency", "1x", 1.0)


def test_claims_shown_as_the_book_table_shows_them():
    assert claims.claim("FP16 Quantization", "size").shown == "-50 %"
    assert claims.claim("Operation Fusion", "size").shown == "0 %"
    assert claims.claim("FP16 Quantization", "der").shown == "< 0.5 %"
    assert claims.claim("FP16 Quantization", "speed").label == "FP16 quantization"
    assert claims.claim("Pruning (30%)", "speed").label == "Pruning (30%)"


# ------------------------------------------------------------------------------------------
# the one rule


@pytest.mark.parametrize(("measured", "word"), [(1.5, "confirmed"), (1.43, "confirmed"), (1.2, "partly"), (1.05, "refuted"),
                                                (0.4, "refuted")])
def test_speed_verdict_words(measured, word):
    v = verdict(claims.claim("FP16 Quantization", "speed"), Measurement(measured, f"{measured}x"))
    assert v.word == word
    assert "1.5x" in v.reason and f"{measured:.2f}x" in v.reason
    assert str(v) == word


def test_der_bound_and_no_change_claims():
    bound = claims.claim("INT8 Quantization", "der")  # < 1 point
    assert verdict(bound, Measurement(0.9, "")).word == "confirmed"
    assert verdict(bound, Measurement(-2.0, "")).word == "confirmed"  # an improvement is within the bound
    assert verdict(bound, Measurement(1.2, "")).word == "refuted"
    same = claims.claim("Operation Fusion", "der")  # 0 %: no change, either way
    assert verdict(same, Measurement(0.0, "")).word == "confirmed"
    assert verdict(same, Measurement(-0.01, "")).word == "refuted"


def test_size_verdict_words():
    half = claims.claim("FP16 Quantization", "size")
    assert verdict(half, Measurement(49.0, "")).word == "confirmed"
    assert verdict(half, Measurement(30.0, "")).word == "partly"
    assert verdict(half, Measurement(0.0, "")).word == "refuted"
    none = claims.claim("Batch Processing", "size")
    assert verdict(none, Measurement(0.0, "")).word == "confirmed"
    assert verdict(none, Measurement(10.0, "")).word == "refuted"


def test_scope_qualifies_the_verdict():
    v = verdict(claims.claim("INT8 Quantization", "speed"), Measurement(1.25, "", scope=claims.CPU_NOT_ANE))
    assert (v.word, str(v)) == ("partly", "partly on CPU; ANE not measurable here")


def test_not_measurable_here_and_not_measured():
    ane = Measurement(None, "", measurable=False, note="Apple Neural Engine speed needs a Mac; this is Linux")
    v = verdict(claims.claim("FP16 Quantization", "speed"), ane)
    assert v.word == "not measurable here" and "Neural Engine" in v.reason
    v = verdict(claims.claim("INT8 Quantization", "der"), Measurement(NAN, "n/a", note="smoke"))
    assert (v.word, str(v)) == ("not measured", "not measured (smoke)")
    assert verdict(claims.claim("INT8 Quantization", "der"), None).word == "not measured"


# ------------------------------------------------------------------------------------------
# summaries on disk


def test_save_and_load_summary_keep_the_chapters_keys(results_dir):
    path = claims.save_summary("pruning", "smoke", pruning())
    assert path == results_dir / "pruning-summary-smoke.json"
    s = claims.load_summary("pruning", "smoke")
    assert s["speed"] == {"segmentation": 1.6, "embedding": 1.4}
    assert s.embedding == "campplus-test" and s.cpu  # the machine is recorded
    assert s.chapter == "09_pruning"
    assert claims.summary_path("streaming", "full").name == "streaming-chunks-full.json"
    assert claims.load_summary("fusion", "smoke") is None


@pytest.mark.parametrize(("speedup", "der_delta"), [(25.0, 0.1), (12.0, 0.7)])
def test_guide_rows_reproduce_the_chapter_table(speedup, der_delta):
    q, f, b, p = quantization(), fusion(), batching(), pruning()
    write(quantization=q, fusion=f, batching=b, pruning=p)
    assert claims.guide_rows("smoke", speedup=speedup, der_delta=der_delta) == _legacy_rows(q, f, b, p, speedup, der_delta)


def test_guide_rows_reproduce_other_outcomes():
    """Other verdicts: fp16 speed confirmed, int8 DER not measured in smoke, fusion DER moved, pruning DER refuted."""
    q = quantization(speed_fp16={"segmentation": 1.6, "embedding": 0.9}, der_int8_points=NAN, der_fp16_points=0.7)
    f, b = fusion(der_delta_points=-0.12, skip_e2e_speedup=1.12), batching(pipe_gain=2.5)
    p = pruning(der_after_kd_points={"segmentation": 0.2, "embedding": 0.4}, speed={"segmentation": 1.0, "embedding": 1.2})
    write(quantization=q, fusion=f, batching=b, pruning=p)
    new = claims.guide_rows("smoke", speedup=20.0, der_delta=0.5)
    assert new == _legacy_rows(q, f, b, p, 20.0, 0.5)
    words = {r["optimization"]: (r["speed verdict"], r["DER verdict"]) for r in new}
    # the CPU figure (1.6x) is context: the guide's speed-up is CoreML's on Apple hardware
    assert words["FP16 quantization"] == (f"not measurable here ({claims.COREML_SPEED})", "refuted")
    assert words["INT8 quantization"][1] == "not measured (smoke)"
    assert words["Operation fusion"] == ("partly", "refuted")
    assert words["Batch processing"] == ("confirmed", "confirmed")
    assert words["Pruning (30%)"] == ("refuted (structural only)", "confirmed")


def test_an_unstable_fusion_speed_ratio_is_shown_but_not_judged():
    ratio = {"median": 2.6, "low": 0.9, "high": 3.5, "repeats": 3, "unstable": True}  # rounds disagree: 0.9x to 3.5x
    write(quantization=quantization(), fusion=fusion(skip_e2e_ratio=ratio), batching=batching(), pruning=pruning())
    row = {r["optimization"]: r for r in claims.guide_rows("smoke", speedup=20.0, der_delta=0.5)}["Operation fusion"]
    assert row["speed verdict"] == "not measured (unstable speed ratio: not judged)"
    assert "2.60x (median of 3 interleaved rounds, 0.90-3.50)" in row["measured speed (CPU)"]
    # as spread, but every round clears the claim's 1.2x: the range settles it
    write(fusion=fusion(skip_e2e_ratio=ratio | {"low": 1.2}))
    row = {r["optimization"]: r for r in claims.guide_rows("smoke", speedup=20.0, der_delta=0.5)}["Operation fusion"]
    assert row["speed verdict"] == "confirmed"


def test_pruning_judges_the_slower_models_interleaved_ratio_and_not_an_unstable_one():
    steady = {"segmentation": {"median": 1.6, "low": 1.55, "high": 1.65, "repeats": 3, "unstable": False},
              "embedding": {"median": 1.4, "low": 1.35, "high": 1.45, "repeats": 3, "unstable": False}}
    write(quantization=quantization(), fusion=fusion(), batching=batching(), pruning=pruning(speed_ratio=steady))
    row = {r["optimization"]: r for r in claims.guide_rows("smoke")}["Pruning (30%)"]
    assert row["speed verdict"] == "confirmed (structural only)"  # 1.4x >= 0.95 x 1.3x
    assert "(structural, ratio 0.3; the slower model: median of 3 interleaved rounds, 1.35-1.45)" in \
        row["measured speed (CPU)"]
    shaky = steady | {"embedding": {"median": 1.7, "low": 0.9, "high": 2.2, "repeats": 3, "unstable": True}}
    write(pruning=pruning(speed_ratio=shaky))
    row = {r["optimization"]: r for r in claims.guide_rows("smoke")}["Pruning (30%)"]
    assert row["speed verdict"] == "not measured (unstable speed ratio: not judged)"


def test_missing_summary_is_not_measured_with_the_reason():
    write(fusion=fusion(), batching=batching(), pruning=pruning())  # no quantization summary
    rows = {r["optimization"]: r for r in claims.guide_rows("smoke")}
    assert len(rows) == 5  # no composed row without its figures
    fp16 = rows["FP16 quantization"]
    assert fp16["measured speed (CPU)"] == "not measured"
    assert fp16["speed verdict"] == fp16["DER verdict"] == "not measured (run 03_quantization)"
    assert rows["Operation fusion"]["speed verdict"] == "confirmed"
    checked = [c for c in claims.check_all("smoke") if c.claim.chapter == "quantization"]
    assert len(checked) == 6 and all(c.verdict.word == "not measured" for c in checked)
    assert "quantization-summary-smoke.json is missing" in checked[0].verdict.reason
    assert "not measured: FP16 quantization speed" in claims.verdict_summary("smoke")


def test_nothing_saved_gives_a_table_of_not_measured():
    rows = claims.guide_rows("full", speedup=1.0, der_delta=0.0)
    assert [r["optimization"] for r in rows][-1] == "all of the above, composed (this chapter)"
    assert all(r["speed verdict"].startswith("not measured") for r in rows[:-1])
    assert claims.other_rows("full") == []


def test_batching_outputs_that_differ_are_not_a_der_measurement():
    write(batching=batching(der_max_error=0.02))
    m = claims.row_measurements("Batch Processing", "smoke")["der"]
    assert not m.measured and "differ" in m.note
    assert verdict(claims.claim("Batch Processing", "der"), m).word == "not measured"


def test_pruning_with_another_embedding_judges_what_was_pruned():
    """A ResNet34 run prunes segmentation only (CAM++'s entries are NaN): the verdict uses segmentation."""
    write(pruning=pruning(speed={"segmentation": 1.6, "embedding": NAN},
                          params_removed_pct={"segmentation": 49.0, "embedding": NAN},
                          der_after_kd_points={"segmentation": 0.8, "embedding": NAN}))
    m = claims.row_measurements("Pruning (30%)", "smoke")
    assert m["speed"].value == 1.6 and m["der"].value == 0.8 and m["size"].value == 49.0
    assert m["speed"].text.startswith("seg 1.60x, emb n/a (structural")
    assert m["size"].text.startswith("seg 49 %, emb n/a fewer parameters")
    assert verdict(claims.claim("Pruning (30%)", "der"), m["der"]).word == "confirmed"


def test_measurements_record_model_and_cpu():
    write(quantization=quantization(environment={"cpu": "Test CPU"}))
    m = claims.row_measurements("INT8 Quantization", "smoke")
    assert m["speed"].model == "campplus-test" and m["speed"].cpu == "Test CPU"
    assert m["speed"].value == 1.25 and m["speed"].scope == claims.CPU_NOT_ANE
    assert math.isclose(m["size"].value, 73.0)


def test_target():
    assert claims.target_met(20.0, 0.5) and not claims.target_met(19.9, 0.0) and not claims.target_met(25.0, 0.6)
    # with a CI the whole interval must be within +0.5 points
    assert claims.target_met(25.0, 0.1, (-0.3, 0.4)) and not claims.target_met(25.0, 0.1, (-0.3, 0.9))
    row = claims.target_rows(25.0, 0.1, (-0.3, 0.9), "median of 3 interleaved runs")
    assert row["DER verdict"] == "target (+0.5) within noise" and "[-0.30, +0.90]" in row["measured DER"]
    assert "interleaved" in row["measured speed (CPU)"]
    # an unstable speed ratio is shown but never judged, in the row and in the target
    assert claims.target_rows(25.0, 0.1, speed_unstable=True)["speed verdict"] == "unstable: not judged"
    assert not claims.target_met(25.0, 0.1, (-0.3, 0.4), speed_unstable=True)


def test_other_rows_read_what_is_there():
    claims.save_summary("caching", "smoke", {"workloads": [
        {"workload": "cold", "speed-up": 0.98}, {"workload": "re-run", "speed-up": 40.0},
        {"workload": "re-cluster (5 thresholds)", "speed-up": 3.5}], "embedding": "x"})
    claims.save_summary("ensembles", "smoke", {"best_fusion": {"config": "a+b", "der_delta_points": -0.3, "cost": 2.1},
                                               "tta": {"members": 3, "der_delta_points": 0.1, "cost": 3.0}})
    rows = claims.other_rows("smoke")
    assert [r["technique"] for r in rows] == ["6. caching", "10. ensembles"]
    assert rows[0]["measured"] == "re-run 40.00x, re-cluster 3.50x, first run 0.98x"


def test_a_summary_with_other_keys_is_not_measured_not_a_crash():
    write(fusion={"embedding": "x", "speedup": 2.0})  # keys this module does not know
    m = claims.row_measurements("Operation Fusion", "smoke")
    assert not m["speed"].measured and "fusion-summary-smoke.json lacks" in m["speed"].note
    claims.save_summary("caching", "smoke", {"rows": []})
    assert claims.other_rows("smoke") == [{"technique": "6. caching", "chapter": "06_caching",
                                           "measured": "not read: caching-summary-smoke.json lacks 'workloads'"}]


def _legacy_other(st, ca, hw, pa, en):
    """Chapter 90's second table as the notebook built it before the refactor (verbatim)."""
    import pandas as pd

    other = []
    if st:
        one = [r for r in st["rows"] if r["chunk (s)"] == 1.0]
        if one:
            other.append({"technique": "7. streaming", "measured": f"1 s chunks: RTFx {fmt(one[0]['RTFx'], '.1f')}, "
                          f"p95 {fmt(one[0]['compute per chunk, p95 (ms)'], '.0f')} ms per chunk, "
                          f"DER {fmt(one[0]['vs offline, strict (pts)'], '+.2f')} pts vs offline", "chapter": "05_streaming"})
    if ca:
        w = {r["workload"]: r for r in ca["workloads"]}
        other.append({"technique": "6. caching", "measured": f"re-run {fmt(w['re-run']['speed-up'])}x, re-cluster "
                      f"{fmt(w['re-cluster (5 thresholds)']['speed-up'])}x, first run {fmt(w['cold']['speed-up'])}x",
                      "chapter": "06_caching"})
    if hw:
        sc = pd.DataFrame(hw["scaling"])
        gains = {m: g.loc[g.threads == 1, "median_ms"].iloc[0] / g["median_ms"].min() for m, g in sc.groupby("model")}
        other.append({"technique": "5. hardware configuration", "measured": f"CoreML: {hw['coreml']}; CPU threads: seg "
                      f"{fmt(gains.get('segmentation', float('nan')))}x, emb {fmt(gains.get('embedding', float('nan')))}x",
                      "chapter": "07_hardware"})
    if pa:
        rows_p = pd.DataFrame(pa["rows"]).set_index("mode")
        other.append({"technique": "9. parallel files", "measured": f"best {fmt(rows_p['throughput vs sequential'].iloc[1:].max())}x "  # noqa: E501
                      f"throughput over sequential ({pa['environment']['logical_cores']} logical cores)",
                      "chapter": "08_parallel"})
    if en:
        other.append({"technique": "10. ensembles", "measured": f"best embedding fusion ({en['best_fusion']['config']}): "
                      f"{fmt(en['best_fusion']['der_delta_points'], '+.2f')} pts for {fmt(en['best_fusion']['cost'])}x the time; "
                      f"segmentation TTA ({en['tta']['members']} shifts): {fmt(en['tta']['der_delta_points'], '+.2f')} pts for "
                      f"{fmt(en['tta']['cost'])}x", "chapter": "10_ensembles"})
    return other


def test_other_rows_reproduce_the_chapter_table():
    st = {"rows": [{"chunk (s)": 0.5, "RTFx": 1.0}, {"chunk (s)": 1.0, "RTFx": 12.34, "compute per chunk, p95 (ms)": 81.6,
                                                      "vs offline, strict (pts)": 3.21}]}
    ca = {"workloads": [{"workload": "cold", "speed-up": 0.98}, {"workload": "re-run", "speed-up": 40.0},
                        {"workload": "re-cluster (5 thresholds)", "speed-up": 3.5}]}
    hw = {"coreml": "not available on Linux", "scaling": [
        {"model": "segmentation", "threads": 1, "median_ms": 100.0}, {"model": "segmentation", "threads": 2, "median_ms": 60.0},
        {"model": "embedding", "threads": 1, "median_ms": 50.0}, {"model": "embedding", "threads": 2, "median_ms": 40.0}]}
    pa = {"rows": [{"mode": "sequential", "throughput vs sequential": 1.0},
                   {"mode": "processes", "throughput vs sequential": 1.4},
                   {"mode": "threads", "throughput vs sequential": 1.1}], "environment": {"logical_cores": 2}}
    en = {"best_fusion": {"config": "a+b", "der_delta_points": -0.3, "cost": 2.1}, "tta": {"members": 3, "der_delta_points": 0.1,
                                                                                           "cost": 3.0}}
    write(streaming=st, caching=ca, hardware=hw, parallel=pa, ensembles=en)
    assert claims.other_rows("smoke") == _legacy_other(st, ca, hw, pa, en)
    assert claims.summary_path("streaming", "smoke").name == "streaming-chunks-smoke.json"
    en["best_fusion"]["der_delta_ci"], en["tta"]["der_delta_ci"] = [-0.9, 0.3], [-0.2, 0.5]
    write(ensembles=en)
    (row,) = [r for r in claims.other_rows("smoke") if r["technique"] == "10. ensembles"]
    assert "-0.30 pts [-0.90, +0.30] for" in row["measured"] and "+0.10 pts [-0.20, +0.50] for" in row["measured"]
    st["rows"][1] |= {"CI low": 1.5, "CI high": 4.75}
    write(streaming=st)
    (row,) = [r for r in claims.other_rows("smoke") if r["technique"] == "7. streaming"]
    assert row["measured"].endswith("DER +3.21 pts [+1.50, +4.75] vs offline")


# ---- the smaller verdicts the chapters glue instead of typing ------------------------------------

def test_same_output_and_same_size_verdicts():
    from diaropt.book.verdicts import same_output_verdict, same_size_verdict

    assert same_output_verdict(3e-6).startswith("confirmed")
    assert same_output_verdict(0.02).startswith("refuted")
    assert same_output_verdict(NAN) == "not measured"
    assert same_size_verdict(33.29, 33.37) == "confirmed: 33.29 MB -> 33.37 MB (+0.2 %)"
    assert same_size_verdict(33.29, 16.6).startswith("refuted")


def test_caching_threads_and_settings_verdicts():
    from diaropt.book.verdicts import minor_verdict, repeat_work_verdict, threads_verdict
    from diaropt.measure.stats import Ratio

    def steady(x):
        return Ratio(x, 0.98 * x, 1.02 * x, 3)
    assert repeat_work_verdict({"re-run": steady(8.0), "grown": steady(2.0)}, steady(1.02)) == (
        "confirmed for repeated work", "refuted: a cache only helps work that repeats")
    assert repeat_work_verdict({"re-run": steady(8.0), "grown": steady(1.0)}, steady(1.5)) == (
        "partly: only re-run", "confirmed")
    shaky = Ratio(1.3, 0.9, 1.8, 3)  # a range wider than a quarter of the median
    assert repeat_work_verdict({"re-run": steady(8.0), "grown": shaky}, shaky) == (
        "partly: only re-run (grown: unstable, not judged)", "unstable: not judged")
    assert threads_verdict({"segmentation": 2, "embedding": 2}, 2).startswith("confirmed")
    assert threads_verdict({"segmentation": 2, "embedding": 3}, 2) == \
        "partly: embedding fastest at 3 threads on 2 physical cores"
    assert minor_verdict([steady(0.97), steady(1.04)]).startswith("second-order")
    assert minor_verdict([steady(0.97), steady(1.3)]) == "matters: from 0.97x to 1.30x"
    assert minor_verdict([steady(0.97), Ratio(1.2, 1.05, 1.3, 3)]) == "matters: from 0.97x to 1.20x"  # stable: median
    # too spread to settle (0.8x-1.3x): neither second-order nor "matters"
    assert minor_verdict([steady(0.97), Ratio(1.05, 0.8, 1.3, 3)]).startswith("within noise: from 0.97x to 1.05x")
    # a model fastest at 3 threads, but by less than 10 %: it counts as peaking at the cores
    assert threads_verdict({"segmentation": 3}, 2, {"segmentation": Ratio(1.02, 0.97, 1.05, 3)}).startswith("confirmed")
    assert threads_verdict({"segmentation": 3}, 2, {"segmentation": Ratio(1.3, 1.2, 1.4, 3)}).startswith("partly")
    assert threads_verdict({"segmentation": 3}, 2, {"segmentation": Ratio(1.1, 0.9, 1.5, 3)}).endswith(
        "(segmentation: unstable, not judged)")


def test_several_ratios_settle_a_claim_for_one_or_for_all():
    from diaropt.book.verdicts import ratios_verdict
    from diaropt.measure.stats import Ratio

    fast, slow, shaky = Ratio(1.5, 1.45, 1.55, 3), Ratio(1.15, 1.12, 1.18, 3), Ratio(1.5, 0.9, 2.1, 3)
    assert ratios_verdict([fast, slow], 1.3) == "confirmed"  # one meets it
    assert ratios_verdict([fast, slow], 1.3, best=False) == "partly"  # not both
    # an unsettled ratio whose range reaches below the settled answer leaves "for all" open...
    assert ratios_verdict([fast, shaky], 1.3, best=False) == "unstable: not judged"
    # ...but not "for one", which the settled ratio already confirms
    assert ratios_verdict([fast, shaky], 1.3) == "confirmed"
    assert ratios_verdict([slow, shaky], 1.3) == "unstable: not judged"  # shaky might confirm


def test_advice_figures_quote_the_quantization_summary_or_say_why_not():
    assert all(v.startswith("n/a (quantization-summary-smoke.json is missing")
               for v in claims.advice_figures("smoke").values())
    claims.save_summary("quantization", "smoke", quantization(der_int8_ci=[0.1, 0.6]))
    fig = claims.advice_figures("smoke")
    assert fig["advice_int8_der"] == "+0.30 points [+0.10, +0.60] (confirmed against the guide's 1 point)"
    assert fig["advice_fp16_speed"] == "seg 0.31x, emb 0.42x"
    assert fig["advice_4bit_der"] == "+2.50 points"
    claims.save_summary("quantization", "smoke", quantization(der_int8_points=NAN, der_4bit_points=None))
    fig = claims.advice_figures("smoke")
    assert fig["advice_int8_der"] == fig["advice_4bit_der"] == "not measured in the smoke profile"
