"""Fused and reference code must agree (technique 2)."""
import numpy as np
import pandas as pd
import pytest
import torch

from diaropt.core import data, metrics, models
from diaropt.core.campplus import CAMPPlus
from diaropt.core.constants import WINDOW_SAMPLES
from diaropt.pipelines import reference as pipeline
from diaropt.pipelines.trunks import build_shared_trunk_pipeline
from diaropt.portable.plain import PlainSegmentation
from diaropt.techniques import fusion


@pytest.fixture(scope="module")
def segmentation(provisioned):
    return models.load_segmentation()


@pytest.fixture(scope="module")
def window():
    return data.pyannote_sample().waveform[:, :WINDOW_SAMPLES][None]


def test_plain_segmentation_equals_pyannote(segmentation, window):
    plain = PlainSegmentation(segmentation)
    with torch.inference_mode():
        ref, out = segmentation(window), plain(window)
    assert torch.equal(ref.argmax(-1), out.argmax(-1))
    assert (ref - out).abs().max().item() < 1e-5
    traced = torch.jit.trace(plain, window)  # the Lightning module cannot be traced; this can
    assert (traced(window) - ref).abs().max().item() < 1e-4


def test_powerset_decodes_are_identical(segmentation, window):
    torch.manual_seed(0)
    mapping = fusion.powerset().mapping
    with torch.inference_mode():
        real = segmentation(window)
    random = torch.log_softmax(3 * torch.randn(16, 589, 7), dim=-1)
    for logp in (real, random):
        ref = fusion.decode_pyannote(logp)
        assert torch.equal(fusion.decode_guide(logp, mapping), ref)
        assert torch.equal(fusion.decode_fused(logp, mapping), ref)
    assert ref.shape == (16, 589, 3) and set(ref.unique().tolist()) <= {0.0, 1.0}
    assert int(ref.sum(-1).max()) <= 2  # at most two speakers at once


def test_fused_segmentation_module(segmentation, window):
    fused = fusion.FusedSegmentation(segmentation)
    with torch.inference_mode():
        expected = fusion.decode_pyannote(segmentation(window))
        assert torch.equal(fused(window), expected)
        scripted = torch.jit.script(fused)
        assert torch.equal(scripted(window), expected)


def test_batchnorm_folding_preserves_campplus(provisioned):
    emb = models.load_campplus()
    folded = models.load_campplus()
    n = fusion.fold_campplus_batchnorm(folded.campplus)
    assert n > 50
    remaining = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert remaining == 0  # every 2-D BN in the FCM head follows a conv
    x = 0.1 * torch.randn(2, 1, 48000)
    with torch.inference_mode():
        a, b = emb(x), folded(x)
    torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-3)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99999


def test_batchnorm_folding_is_not_a_no_op():
    torch.manual_seed(0)
    net = CAMPPlus().eval()
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    before = [p.clone() for p in net.head.conv1.parameters()]
    fusion.fold_campplus_batchnorm(net)
    assert not torch.equal(before[0], net.head.conv1.weight)
    assert net.head.conv1.bias is not None


@pytest.mark.slow
def test_shared_trunk_equals_reference_embeddings_and_output(provisioned):
    """Also the reference pipeline's own test (one reference run serves both): two speakers on
    pyannote's sample, DER below 20 %, the stages adding up to the total."""
    rec = data.pyannote_sample()
    ref = pipeline.build_reference_pipeline("campplus")
    shared = build_shared_trunk_pipeline("campplus", skip_inactive=True)
    f = {"waveform": rec.waveform, "sample_rate": 16000, "uri": rec.uri}
    seen = {}

    def keep(step, artifact=None, file=None, total=None, completed=None):
        if total is None and artifact is not None:
            seen[step] = artifact

    from diaropt.pipelines.progress import reporting

    with reporting(keep):  # the reference's own segmentation and embeddings, from pyannote's hook
        h_ref, stages = pipeline.run_pyannote(ref, rec)
    assert len(h_ref.labels()) == 2
    assert metrics.der(rec.reference, h_ref, rec.uem, "strict") < 0.2
    assert stages["total"] == pytest.approx(sum(stages[s] for s in ("segmentation", "counting", "embedding", "clustering")))
    seg, e_ref = seen["segmentation"], seen["embeddings"]
    e_new = shared.get_embeddings(f, seg, exclude_overlap=True)
    computed = ~np.isnan(e_new).any(-1)
    assert 0.3 < computed.mean() < 1.0  # some speakers were skipped, most were not
    np.testing.assert_allclose(e_new[computed], e_ref[computed], atol=1e-4)
    # skipped = exactly the speakers with an empty mask
    binary = np.nan_to_num(seg.data).sum(axis=1) > 0
    assert np.array_equal(computed, binary)
    h_new, _ = pipeline.run_pyannote(shared, rec)
    assert metrics.der(h_ref, h_new, rec.uem) == 0.0


def test_replacement_embedding_is_really_used(provisioned):
    """A replacement embedding callable must be called and its output used (pyannote's
    Pipeline.__setattr__ diverts nn.Module attributes; this guards against a silent no-op)."""
    rec = data.pyannote_sample()
    calls = []

    class Fixed(torch.nn.Module):
        def forward(self, w, m):
            calls.append(w.shape[0])
            return torch.full((w.shape[0], m.shape[1], 192), 0.5)

    pipe = build_shared_trunk_pipeline("campplus", integrated=Fixed())
    f = {"waveform": rec.waveform, "sample_rate": 16000, "uri": rec.uri}
    emb = pipe.get_embeddings(f, pipe.get_segmentations(f), exclude_overlap=True)
    assert calls and sum(calls) == emb.shape[0]
    assert np.all(emb == 0.5)


def test_guide_snippet_fails_as_written():
    """The guide's class cannot be called: script_method on a plain nn.Module leaves a stub."""
    result = fusion.guide_snippet(torch.nn.Identity(), torch.zeros(1, 589 * 7))
    assert result.startswith("TypeError") and "ScriptMethodStub" in result


def test_model_fusion_helpers():
    table = pd.DataFrame({"median (ms)": [10.0, 5.0, 8.0], "max |error|": [0.0, 1.234e-6, 2e-5]},
                         index=pd.Index(["eager", "a", "b"], name="variant"))
    table["speed-up vs eager"] = table["median (ms)"].iloc[0] / table["median (ms)"]
    assert fusion.best_speedup(table) == 2.0
    assert np.isnan(fusion.best_speedup(table.iloc[:1]))  # only the eager row: no fusion measured
    shown = fusion.show(table)
    assert shown.loc["a", "max |error|"] == "1.2e-06" and shown.loc["a", "median (ms)"] == 5.0
    rows = fusion.variant_rows({"x1": (lambda w: w, None), "x2": (lambda w: 2 * w, 0.5)}, torch.ones(1, 4),
                               torch.full((1, 4), 1.5), repeats=2)
    assert [r["variant"] for r in rows] == ["x1", "x2"] and [r["max |error|"] for r in rows] == [0.5, 0.5]
    assert rows[1]["compile/prepare (s)"] == 0.5 and rows[1]["rounds"] == 3
    assert rows[1]["speed-up low"] <= rows[1]["speed-up vs eager"] <= rows[1]["speed-up high"]
    ranged = table.assign(**{"speed-up low": [1.0, 1.9, 1.1], "speed-up high": [1.0, 2.1, 1.4], "rounds": 3})
    best = fusion.best_ratio(ranged)
    assert (best.median, best.low, best.high, best.unstable) == (2.0, 1.9, 2.1, False)
    assert fusion.best_ratio(ranged.iloc[:1]) is None
    assert [r.median for r in fusion.fused_ratios({"m": ranged, "n": ranged.iloc[:2]})] == [2.0, 1.25, 2.0]
    value, seconds = fusion.timed_prepare(lambda: 42)
    assert value == 42 and seconds >= 0


def test_decode_ceiling_is_amdahls_bound_over_the_range_of_shares():
    decode = pd.DataFrame({"share of one model call (%)": [1.0], "share low (%)": [0.5], "share high (%)": [2.0],
                           "rounds": [3]}, index=["guide chain (fixed)"])
    r = fusion.decode_ceiling(decode)
    assert r.median == pytest.approx(1 / 0.99) and r.low == pytest.approx(1 / 0.995) and r.high == pytest.approx(1 / 0.98)
    assert not r.unstable and r.repeats == 3


def test_embedding_fusion_scope_names_the_reason():
    campplus = models.choose_embedding("campplus")
    assert "folding" in fusion.embedding_fusion_scope(campplus, compile_models=True)
    assert "full profile only" in fusion.embedding_fusion_scope(campplus, compile_models=False)
    other = models.EmbeddingChoice("resnet34", "x", "test")
    assert "CAM++ only" in fusion.embedding_fusion_scope(other, compile_models=True)


def _run(embedding_s, total_s, der):
    return {"totals": {"stage_seconds": {"embedding": embedding_s}, "wall_seconds": total_s, "rtfx": 60 / total_s,
                       "der_strict": der, "der_fluidaudio": der / 2}}


def test_trunk_table_is_relative_to_the_first_run():
    runs = {"reference": _run(8.0, 10.0, 0.2), "shared-trunk": _run(4.0, 6.0, 0.2), "shared-trunk-skip": _run(2.0, 4.0, 0.2)}
    table = fusion.trunk_table(runs)
    assert list(table.index) == list(runs)
    assert table.loc["reference", "end-to-end speed-up"] == 1.0
    assert table.loc["shared-trunk-skip", "embedding speed-up"] == 4.0
    assert table.loc["shared-trunk-skip", "end-to-end speed-up"] == 2.5
    assert table.loc["shared-trunk", "DER strict (%)"] == pytest.approx(20.0)
