"""Ensembles (technique 10): the guide's snippet fails, the fix mixes probabilities, score
fusion is exactly a weighted mean of cosines, and GE2E loads only its real weights."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from diaropt.core import data, models
from diaropt.core.errors import ModelError
from diaropt.techniques import ensembles as en


class Const(nn.Module):
    def __init__(self, logp):
        super().__init__()
        self.logp = logp

    def forward(self, x):
        return self.logp.expand(len(x), -1)


def test_guide_snippet_raises_attribute_error():
    m = en.GuideEnsembleDiarizationModel([nn.Identity(), nn.Identity()])
    with pytest.raises(AttributeError, match="ensemble_weights"):
        m(torch.zeros(1, 3))


def test_weighted_ensemble_averages_probabilities():
    p1, p2 = torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([[0.1, 0.1, 0.8]])
    ens = en.WeightedEnsemble([Const(p1.log()), Const(p2.log())])
    out = ens(torch.zeros(1, 1)).exp()
    torch.testing.assert_close(out, (p1 + p2) / 2)
    torch.testing.assert_close(out.sum(-1), torch.ones(1))


def test_shifted_input_shifts_and_pads():
    m = en.ShiftedInput(nn.Identity(), 2)
    x = torch.arange(6.0).reshape(1, 1, 6)
    assert m(x).tolist() == [[[2.0, 3.0, 4.0, 5.0, 0.0, 0.0]]]
    torch.testing.assert_close(en.ShiftedInput(nn.Identity(), 0)(x), x)


def test_fused_cosine_is_weighted_mean_of_cosines():
    rng = np.random.default_rng(0)
    a1, b1 = rng.normal(size=(2, 192))
    a2, b2 = rng.normal(size=(2, 256))
    w = [0.3, 0.7]
    fa = en.fuse_embeddings([a1[None], a2[None]], w)[0]
    fb = en.fuse_embeddings([b1[None], b2[None]], w)[0]
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    assert cos(fa, fb) == pytest.approx(w[0] * cos(a1, b1) + w[1] * cos(a2, b2), abs=1e-6)
    with pytest.raises(ValueError):
        en.fuse_embeddings([a1[None], a2[None]], [0.5, 0.6])
    nan = en.fuse_embeddings([np.full((1, 192), np.nan), a2[None]], w)
    assert np.isnan(nan).any()


def test_ge2e_partials():
    g = en.GE2EChunkEmbedding.__new__(en.GE2EChunkEmbedding)
    g.min_frames = 40
    mel = np.arange(1001 * 2, dtype=np.float32).reshape(1001, 2)
    mask = np.zeros(589)
    assert g.partials(mel, mask) == []
    mask[:100] = 1  # ~170 mel frames active
    parts = g.partials(mel, mask)
    assert [len(p) for p in parts] == [160]  # remainder of ~10 frames is dropped
    mask[:] = 1
    parts = g.partials(mel, mask)
    assert all(len(p) == 160 for p in parts) and len(parts) == 7  # 6 full + the remainder as a full partial
    assert parts[-1][-1, 0] == mel[-1, 0]


def test_ge2e_loads_real_weights_and_embeds_a_speaker(provisioned):
    enc = models.load_ge2e()
    g = en.GE2EChunkEmbedding(enc)
    w = data.pyannote_sample().waveform[:, :160000][None]
    masks = torch.zeros(1, 3, 589)
    masks[0, 0] = 1
    out = g(w, masks)
    assert out.shape == (1, 3, 256)
    assert torch.linalg.norm(out[0, 0]).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isnan(out[0, 1]).all()  # no active frame: no embedding
    # the same speech through Resemblyzer's own whole-utterance path agrees closely
    ref = enc.embed_utterance(w[0, 0].numpy())
    assert float(out[0, 0] @ torch.from_numpy(ref)) > 0.9


def test_ge2e_tampered_weights_are_refused(monkeypatch, tmp_path):
    bad = tmp_path / "resemblyzer"
    bad.mkdir()
    (bad / "__init__.py").write_text("")
    (bad / "pretrained.pt").write_bytes(b"not the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "resemblyzer", raising=False)
    importlib.invalidate_caches()
    with pytest.raises(ModelError, match="sha256"):
        models.ge2e_weights()


# ---- the chapter's measurements -----------------------------------------------------------------

def test_fusion_configs_weigh_the_first_member_against_the_others():
    members = {"ResNet34": None, "GE2E": None, "CAM++": None}
    assert en.others_label(members, "ResNet34") == "GE2E+CAM++"
    configs = en.fusion_configs(members, "ResNet34", [1.0, 0.5, 0.0])
    assert list(configs) == ["ResNet34 alone", "ResNet34 0.50 / GE2E+CAM++ 0.50", "GE2E+CAM++ alone"]
    assert configs["ResNet34 0.50 / GE2E+CAM++ 0.50"] == {"ResNet34": 0.5, "GE2E": 0.25, "CAM++": 0.25}
    for weights in configs.values():
        assert sum(weights.values()) == pytest.approx(1.0)


class FakeEnsemblePipeline:
    """Re-clustering stand-in: the hypothesis covers the reference when the threshold is right
    for the weights (0.5 for the base alone, 0.7 otherwise), half of it otherwise."""

    def __init__(self):
        from types import SimpleNamespace

        self.clustering, self.weights = SimpleNamespace(threshold=None), None

    def set_weights(self, weights):
        self.weights = {k: v for k, v in weights.items() if v > 0}

    def __call__(self, file):
        from types import SimpleNamespace

        from pyannote.core import Annotation, Segment

        right = 0.5 if self.weights == {"CAM++": 1.0} else 0.7
        hyp = Annotation(uri=file["uri"])
        hyp[Segment(0, 10 if abs(self.clustering.threshold - right) < 1e-9 else 5)] = "X"
        return SimpleNamespace(speaker_diarization=hyp)


def test_tuned_table_tunes_each_config_and_measures_its_cost():
    from pyannote.core import Annotation, Segment, Timeline

    ref = Annotation(uri="r")
    ref[Segment(0, 10)] = "A"
    rec = data.Recording("r", torch.zeros(1, 160000), ref, Timeline([Segment(0, 10)]), "simulated", "test")
    pipe, files = FakeEnsemblePipeline(), [rec.as_pyannote_file()]
    members = {"CAM++": None, "GE2E": None}
    configs = en.fusion_configs(members, "CAM++", [1.0, 0.5, 0.0])
    sweep = en.threshold_sweep(pipe, files, [rec], configs, [0.5, 0.7])
    assert len(sweep) == 6 and sweep["tune DER strict (%)"].min() == 0.0
    ens = en.tuned_table(pipe, sweep, configs, files, [rec], {"CAM++": 2.0, "GE2E": 6.0}, test_wall=12.0, base="CAM++")
    assert ens["tuned threshold"].tolist() == [0.5, 0.7, 0.7]
    assert ens["test DER strict (%)"].tolist() == [0.0, 0.0, 0.0]
    # seg + rest = 12 - 8 = 4 s; CAM++ alone 4 + 2, fused 4 + 8, GE2E alone 4 + 6
    assert ens["pipeline cost (x CAM++ alone)"].tolist() == pytest.approx([1.0, 2.0, 10 / 6])
    assert ens["embedding cost (x CAM++)"].tolist() == pytest.approx([1.0, 4.0, 3.0])
    assert en.best_fusion(ens, members, "CAM++").name == "CAM++ 0.50 / GE2E 0.50"
    # a configuration tuned to the wrong threshold covers half of each of two files: +50 points on both
    rec2 = data.Recording("r2", torch.zeros(1, 160000), ref, Timeline([Segment(0, 10)]), "simulated", "test")
    wrong = sweep.copy()
    wrong.loc[(wrong["config"] == "GE2E alone") & (wrong["threshold"] == 0.5), "tune DER strict (%)"] = -1.0
    ens = en.tuned_table(pipe, wrong, configs, [rec.as_pyannote_file(), rec2.as_pyannote_file()], [rec, rec2],
                         {"CAM++": 2.0, "GE2E": 6.0}, test_wall=12.0, base="CAM++")
    assert ens.loc["CAM++ alone", ["Δ strict vs CAM++ (pts)", "CI low", "CI high"]].tolist() == [0.0, 0.0, 0.0]
    assert ens.loc["GE2E alone", ["Δ strict vs CAM++ (pts)", "CI low", "CI high"]].tolist() == pytest.approx([50.0] * 3)


def test_worth_and_cost_verdict_read_the_measurements():
    assert en.worth(-1.0, (-1.8, -0.3), 2.0).startswith("worth considering")
    assert en.worth(-1.0, (-2.5, 0.4), 2.0) == ("not worth it: -1.00 points [-2.50, +0.40] for 2.00x the time "
                                                "(no measurable gain)")
    assert en.worth(0.8, (0.1, 1.5), 2.0) == "not worth it: +0.80 points [+0.10, +1.50] for 2.00x the time"
    nan = float("nan")
    assert en.worth(-1.0, (nan, nan), 2.0) == "worth considering: -1.00 points (no CI: one file) for 2.00x the time"
    assert en.cost_verdict(1.5, 2.25) == "refuted: 1.50x and 2.25x the time"
    assert en.cost_verdict(0.8, 2.0).startswith("partly")  # one ensemble cheaper beyond noise
    assert en.cost_verdict(1.05, 2.0) == ("within noise: 1.05x and 2.00x the time "  # 5 % dearer: a single run cannot tell
                                          "(1.05x within ±10 % of the single model)")
