"""Pruning (technique 4): the guide's snippet only zeroes; structural pruning really shrinks,
and the LSTM surgery computes exactly what the zeroed selection computes."""
import copy

import pytest
import torch

from diaropt.core import data, models
from diaropt.portable.plain import PlainSegmentation
from diaropt.techniques import pruning as pr


@pytest.fixture(scope="module")
def seg(provisioned):
    return PlainSegmentation(models.load_segmentation())


@pytest.fixture(scope="module")
def windows():
    return data.pyannote_sample().waveform[:, :320000].reshape(2, 1, 160000)


def test_guide_snippet_fails_as_written_and_only_zeroes_when_fixed(seg):
    with pytest.raises(NameError, match="nn"):
        pr.run_guide_snippet(copy.deepcopy(seg), fix_import=False)
    pruned = pr.guide_prune_model(copy.deepcopy(seg), 0.3)
    assert pr.parameter_count(pruned) == pr.parameter_count(seg)
    shapes = lambda m: {n: p.shape for n, p in m.named_parameters()}  # noqa: E731
    assert shapes(pruned) == shapes(seg)
    # 30 % of the classifier's 7 rows (2 of them) are zero; the LSTM is untouched
    assert int((pruned.classifier.weight.abs().sum(1) == 0).sum()) == 2
    assert torch.equal(pruned.lstm.weight_hh_l0, seg.lstm.weight_hh_l0)
    sizes, sizes0 = pr.sizes_mb(pruned), pr.sizes_mb(seg)
    assert sizes["stored (MB)"] == pytest.approx(sizes0["stored (MB)"], rel=1e-3)
    assert sizes["xz-compressed (MB)"] < sizes0["xz-compressed (MB)"]


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6])
def test_lstm_surgery_equals_zeroed_units(seg, windows, ratio):
    keep = pr.segmentation_keep(seg, ratio)
    small, zeroed = pr.prune_segmentation(seg, keep), pr.zero_segmentation(seg, keep)
    assert small.lstm.hidden_size == pr.n_keep(128, ratio)
    with torch.no_grad():
        a, b, ref = small(windows), zeroed(windows), seg(windows)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    if ratio == 0.0:
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=0)
        assert pr.parameter_count(small) == pr.parameter_count(seg)
    else:
        assert (a - ref).abs().max() > 1e-3  # pruning changed something
        assert pr.parameter_count(small) < (1 - ratio) * pr.parameter_count(seg)


def test_surgery_keeps_the_strongest_units(seg):
    keep = pr.segmentation_keep(seg, 0.5)
    w = torch.cat([seg.lstm.weight_ih_l1, seg.lstm.weight_hh_l1], 1).reshape(4, 128, -1).pow(2).sum((0, 2))
    kept = set(keep["lstm"][1][0].tolist())
    dropped = [u for u in range(128) if u not in kept]
    assert min(w[sorted(kept)]) >= max(w[dropped])


def test_bad_ratio_is_refused(seg):
    with pytest.raises(ValueError):
        pr.segmentation_keep(seg, 1.0)


def test_campplus_structural_pruning_shrinks_and_keeps_interface(provisioned):
    emb = models.load_campplus()
    small = pr.prune_campplus(emb, 0.3)
    assert pr.parameter_count(small) < 0.6 * pr.parameter_count(emb)
    w = data.pyannote_sample().waveform[:, :48000][None]
    with torch.no_grad():
        out = small(w, torch.ones(1, 2, 100))
    assert out.shape == (1, 2, 192) and torch.isfinite(out).all()
    assert pr.parameter_count(pr.prune_campplus(emb, 0.0)) == pr.parameter_count(emb)


def test_distillation_reduces_the_loss(seg, windows):
    student = pr.prune_segmentation(seg, pr.segmentation_keep(seg, 0.5))
    with torch.no_grad():
        target = seg(windows)
        before = float(pr.powerset_kl(student(windows), target))
    h = pr.distill(student, target, windows, pr.powerset_kl, steps=8, batch=2, lr=3e-3)
    with torch.no_grad():
        after = float(pr.powerset_kl(student(windows), target))
    assert after < 0.8 * before
    assert len(h["losses"]) == 8
    assert all(not p.requires_grad for p in student.parameters())


@pytest.mark.slow
def test_optimized_pipeline_uses_the_given_models(seg):
    """Replacement models reach the pipeline: the same weights give the same output, other
    weights another one (so a pruned model's DER is really the pruned model's)."""
    from diaropt.pipelines.optimized import build_optimized_pipeline
    from diaropt.pipelines.reference import run_pyannote

    rec = data.pyannote_sample()
    emb = models.load_campplus()

    def run(**kw):
        pipe = build_optimized_pipeline("campplus", runtime="torch", **kw)
        return run_pyannote(pipe, rec)[0]

    default = run()
    assert run(segmentation_model=seg, embedding_model=emb) == default
    silent = pr.zero_segmentation(seg, pr.segmentation_keep(seg, 0.9))
    assert run(segmentation_model=silent) != default


def test_der_table_scores_each_pruned_model_in_its_place(seg):
    """The chapter's DER table puts each variant where it belongs: a segmentation variant
    replaces the segmentation, a CAM++ variant the embedding trunk; the same weights give no
    change, other weights another DER."""
    rec = data.pyannote_sample()  # two speakers
    emb = models.load_campplus()
    flat = copy.deepcopy(emb)  # every speaker gets the same embedding: one cluster
    flat.campplus.dense.linear.weight.data.zero_()
    silent = pr.zero_segmentation(seg, pr.segmentation_keep(seg, 0.9))
    table = pr.der_table("campplus", [rec], seg, emb, {pr.SEG: copy.deepcopy(seg)},
                         {(pr.SEG, 0.9): silent, (pr.EMB, 0.3): flat},
                         {(pr.SEG, 0.9): copy.deepcopy(seg), (pr.EMB, 0.3): copy.deepcopy(emb)}, progress=False)
    d = table["Δ strict (pts)"]
    assert d[("none", "unpruned")] == 0.0 and table.loc[("none", "unpruned"), "DER strict (%)"] < 30
    assert d[(pr.SEG, f"guide snippet (zeros), {pr.GUIDE_RATIO}")] == 0.0
    assert d[(pr.SEG, "structural 0.9, before KD")] > 5 and d[(pr.SEG, "structural 0.9, after KD")] == 0.0
    assert d[(pr.EMB, "structural 0.3, before KD")] > 5 and d[(pr.EMB, "structural 0.3, after KD")] == 0.0


# ------------------------------------------------------------------------------------------
# the chapter's tables and verdicts (fabricated rows, no model needed)


def _struct(emb=True, spread=0.02):
    """A structural table as ``structural_table`` makes it; each speed-up's per-round range is
    ``spread`` either side of its median."""
    import pandas as pd

    rows = [("segmentation-3.0", 0.0, 1000, 10.0, 4.0), ("segmentation-3.0", 0.3, 500, 5.0, 2.5)]
    if emb:
        rows += [("CAM++", 0.0, 2000, 8.0, 8.0), ("CAM++", 0.3, 900, 4.0, 7.0)]
    rows = [{"model": m, "ratio": r, "parameters": p, "GFLOPs / 10 s": g, "ms / window": t} for m, r, p, g, t in rows]
    base = {r["model"]: r for r in rows if r["ratio"] == 0.0}
    for r in rows:
        r["params removed (%)"] = 100 * (1 - r["parameters"] / base[r["model"]]["parameters"])
        r["speed-up"] = base[r["model"]]["ms / window"] / r["ms / window"]
        r |= {"speed-up low": r["speed-up"] - spread, "speed-up high": r["speed-up"] + spread, "rounds": 3}
    return pd.DataFrame(rows).set_index(["model", "ratio"])


def _ders(emb=True):
    import pandas as pd

    rows = [("none", "unpruned", 0.0), ("segmentation-3.0", "structural 0.3, after KD", 0.6)]
    if emb:
        rows.append(("CAM++", "structural 0.3, after KD", 1.4))
    return pd.DataFrame([{"model": m, "variant": v, "Δ strict (pts)": d} for m, v, d in rows]).set_index(["model", "variant"])


def test_structural_figures_and_verdicts_with_campplus():
    figs = pr.structural_figures(_struct(), [0.3])
    assert figs["pr_seg_30_params"] == (50.0, ".0f")
    assert figs["pr_emb_30_speed"][0] == pytest.approx(8 / 7)
    assert figs["pr_seg_30_flops"][0] == pytest.approx(0.5)
    v = pr.verdicts(_struct(), _ders())
    assert v["pr_verdict_size"] == "confirmed only when done structurally"  # 50 % and 55 % of the parameters removed
    assert v["pr_verdict_speed"] == "partly (structural only)"  # the slower model: 8/7 = 1.14x
    assert v["pr_verdict_der"] == "segmentation: confirmed; CAM++: refuted at the frozen threshold (not re-tuned)"
    # the slower model's per-round ratios range over 0.84x-1.44x: shown, not judged
    assert pr.verdicts(_struct(spread=0.3), _ders())["pr_verdict_speed"] == "unstable: not judged (structural only)"


def test_verdicts_and_summary_without_campplus():
    """Another embedding model: CAM++ is not pruned, its figures are NaN and its verdict says so."""
    import math

    import pandas as pd

    figs = pr.structural_figures(_struct(emb=False), [0.3])
    assert math.isnan(figs["pr_emb_30_params"][0])
    v = pr.verdicts(_struct(emb=False), _ders(emb=False))
    assert v["pr_verdict_speed"] == "confirmed (structural only)"  # segmentation: 1.6x
    assert v["pr_verdict_der"].endswith("CAM++: not measured (CAM++ not pruned in this build)")
    snippet = pd.DataFrame([{"model": "segmentation-3.0", "stored (MB)": 6.0},
                            {"model": "segmentation-3.0, guide-pruned", "stored (MB)": 6.0}]).set_index("model")
    s = pr.summary("resnet34-test", snippet, _struct(emb=False), _ders(emb=False), kd_steps=2)
    assert set(s) == {"embedding", "ratio", "params_removed_pct", "speed", "speed_ratio", "der_after_kd_points",
                      "der_after_kd_ci", "guide_snippet_size_ratio", "kd_steps"}
    assert s["speed_ratio"]["segmentation"]["median"] == 1.6 and "embedding" not in s["speed_ratio"]
    assert s["speed"]["segmentation"] == 1.6 and math.isnan(s["speed"]["embedding"])
    assert s["guide_snippet_size_ratio"]["segmentation"] == 1.0


def test_campplus_scope_explains_a_skip():
    from diaropt.core.models import EmbeddingChoice

    runs, text = pr.campplus_scope(EmbeddingChoice("campplus", "campplus-id", "requested"))
    assert runs and "measured" in text
    runs, text = pr.campplus_scope(EmbeddingChoice("resnet34", "resnet-id", "weights present"))
    assert not runs and "resnet-id" in text and "skipped" in text


def test_kd_figures_mean_of_the_last_losses():
    h = {("segmentation-3.0", 0.3): {"losses": [9.0, 5, 4, 3, 2, 1], "seconds": 30.0}}
    figs = pr.kd_figures(h, {"segmentation-3.0": 6, "CAM++": 3}, [0.3])
    assert figs["pr_kd_final_seg_30"] == (3.0, ".3f")
    assert figs["pr_kd_minutes"] == (0.5, ".1f")
    import math

    assert math.isnan(figs["pr_kd_steps_emb"][0]) and math.isnan(figs["pr_kd_final_emb_30"][0])


def test_structural_table_relative_to_the_unpruned_model(seg, windows):
    small = pr.prune_segmentation(seg, pr.segmentation_keep(seg, 0.5))
    table = pr.structural_table({("segmentation-3.0", 0.0): seg, ("segmentation-3.0", 0.5): small}, windows, repeats=1)
    assert table.loc[("segmentation-3.0", 0.0), "params removed (%)"] == 0.0
    assert table.loc[("segmentation-3.0", 0.5), "params removed (%)"] > 50
    assert table.loc[("segmentation-3.0", 0.5), "GFLOPs / 10 s"] < table.loc[("segmentation-3.0", 0.0), "GFLOPs / 10 s"]


def test_distillation_data_comes_from_tune_voices_only(tmp_path, monkeypatch):
    """The students learn from the realistic tune split: no voice of dev or test, the asked number
    of windows, the teacher's output for each."""
    from diaropt.core import meetings

    monkeypatch.setenv("DIAROPT_MEETINGS", str(tmp_path / "meetings"))
    kd = pr.distillation_set(6, lambda w: torch.zeros(len(w), 589, 7), profile="smoke")
    assert kd["windows"].shape == (6, 1, 160000) and kd["seg_targets"].shape[0] == 6
    voices = {v for r in kd["recordings"] for v in r.meta["speakers"]}
    assert voices and voices <= set(meetings.split_speakers()["tune"])
    assert all(r.split == "tune" and r.source == "simulated" for r in kd["recordings"])
    assert kd["windows"].abs().amax(dim=(1, 2)).min() > 0  # real audio in every window, no padding-only one
