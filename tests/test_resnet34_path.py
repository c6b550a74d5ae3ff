"""The WeSpeaker ResNet34 path is real: supplying ResNet34 weights (``DIAROPT_RESNET34``) re-runs
the book with them.

No real ResNet34 weights can be had offline here, so these tests use a checkpoint of the right
architecture with random weights (``tests/resnet34_random.py``), written to a temporary folder.
They check plumbing only: loading, the choice of the embedding model, the trunk/pool split, the
pipelines and, in the ``resnet34`` tests (``make test-resnet34``), that every chapter's smoke
profile runs to the end. Random weights never produce a published number: the chapters' results
go to a temporary ``DIAROPT_RESULTS`` folder, never to ``_build/results``.
"""
import json
import logging
import re

import pytest
import torch
import yaml
from pyannote.core import Annotation

from diaropt.core import config, data, models
from diaropt.core.errors import ModelError
from diaropt.pipelines.trunks import trunk_and_pool
from resnet34_random import random_resnet34, write_random_resnet34


@pytest.fixture(scope="session")
def resnet34_checkpoint(tmp_path_factory):
    return write_random_resnet34(tmp_path_factory.mktemp("resnet34-random") / "pytorch_model.bin")


@pytest.fixture
def resnet34_env(monkeypatch, resnet34_checkpoint):
    monkeypatch.setenv("DIAROPT_RESNET34", str(resnet34_checkpoint))
    return resnet34_checkpoint


@pytest.fixture(scope="module")
def resnet34_model(tmp_path_factory):
    path = write_random_resnet34(tmp_path_factory.mktemp("resnet34-model") / "pytorch_model.bin")
    return models.load_resnet34(str(path))


# ---- the checkpoint and the choice ---------------------------------------------------------

def test_random_checkpoint_loads_strictly_as_wespeaker_resnet34(resnet34_model):
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    assert type(resnet34_model) is WeSpeakerResNet34 and not resnet34_model.training
    assert resnet34_model.dimension == 256
    # Model.from_pretrained loads strictly: every weight of the checkpoint is the model's
    reference = random_resnet34()
    got = resnet34_model.state_dict()
    assert set(got) == set(reference.state_dict())
    assert all(torch.equal(got[k], v) for k, v in reference.state_dict().items())


def test_random_weights_are_deterministic():
    a, b = random_resnet34().state_dict(), random_resnet34().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = random_resnet34(seed=1).state_dict()
    assert not torch.equal(a["resnet.conv1.weight"], c["resnet.conv1.weight"])


def test_auto_choice_picks_resnet34_from_the_environment(resnet34_env):
    choice = models.choose_embedding("auto")
    assert choice.name == "resnet34"
    # the record says which file was used, and that its weights are random: never the hub model's id
    assert str(resnet34_env) in choice.reason and "RANDOM WEIGHTS" in choice.reason
    assert choice.model_id == models.RANDOM_RESNET34_ID != models.RESNET34_HUB_ID
    assert type(choice.model).__name__ == "WeSpeakerResNet34"
    assert models.embedding_file(choice) == resnet34_env


def test_embedding_file_accepts_a_folder_and_names_cam_plus_plus(monkeypatch, resnet34_checkpoint, provisioned):
    monkeypatch.setenv("DIAROPT_RESNET34", str(resnet34_checkpoint.parent))
    assert models.embedding_file(models.choose_embedding("resnet34")) == resnet34_checkpoint
    assert models.embedding_file(models.choose_embedding("campplus")) == models.model_path("campplus")


def test_embedding_file_without_local_resnet34_is_an_error(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("DIAROPT_RESNET34", raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    assert not models.resnet34_available()
    with pytest.raises(ModelError, match="DIAROPT_RESNET34"):
        models.embedding_file(models.choose_embedding("resnet34"))


# ---- the shared trunk --------------------------------------------------------------------

def test_trunk_and_pool_equals_the_models_own_forward(resnet34_model):
    frames_of, pool = trunk_and_pool(resnet34_model)
    gen = torch.Generator().manual_seed(0)
    waveforms = 0.1 * torch.randn(2, 1, 160000, generator=gen)
    masks = (torch.rand(2, 3, 589, generator=gen) > 0.4).float()
    with torch.inference_mode():
        frames = frames_of(waveforms)
        split = pool(frames, masks)
        whole = resnet34_model(waveforms, weights=masks)
        unweighted = pool(frames, None)
        plain = resnet34_model(waveforms)
    assert frames.dim() == 3 and frames.shape[0] == 2  # (B, C, T): time last, like CAM++'s frames
    assert split.shape == (2, 3, 256) and unweighted.shape == (2, 256)
    assert torch.allclose(split, whole, atol=1e-5) and torch.allclose(unweighted, plain, atol=1e-5)


def test_trunk_frames_slice_along_time_per_block(resnet34_model):
    """Block-trunk slicing needs time on the last axis: two 10 s blocks give twice the frames."""
    from diaropt.pipelines.trunks import block_frames

    frames_of, _ = trunk_and_pool(resnet34_model)
    wav = 0.1 * torch.randn(1, 320000, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        frames, per_block = block_frames(frames_of, wav)
        second = frames_of(wav[:, 160000:][None])[0]
    assert frames.shape[-1] == 2 * per_block
    assert torch.allclose(frames[:, per_block:], second, atol=1e-5)


# ---- the pipelines -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    return data.pyannote_sample()


def _covers(hyp, rec):
    assert isinstance(hyp, Annotation)
    extent = hyp.get_timeline().extent()
    assert 0.0 <= extent.start and extent.end <= rec.duration + 1e-3


@pytest.mark.slow
def test_reference_pipeline_diarizes_with_resnet34(resnet34_env, sample, provisioned):
    from diaropt.pipelines.reference import build_reference_pipeline, run_pyannote

    pipe = build_reference_pipeline("auto", segmentation_step=0.5)
    assert pipe.embedding_choice.name == "resnet34"
    assert pipe.parameters(instantiated=True)["clustering"]["threshold"] == config.reference_params("resnet34")[
        "clustering"]["threshold"]
    hyp, stages = run_pyannote(pipe, sample)
    _covers(hyp, sample)  # random weights: a meaningless diarization, but a diarization
    assert stages["total"] > 0


@pytest.mark.slow
def test_block_trunk_pipeline_diarizes_with_resnet34(resnet34_env, sample, provisioned):
    from diaropt.pipelines.optimized import build_optimized_pipeline
    from diaropt.pipelines.reference import run_pyannote

    pipe = build_optimized_pipeline("resnet34", segmentation_step=0.5, runtime="torch")
    hyp, _ = run_pyannote(pipe, sample)
    _covers(hyp, sample)


@pytest.mark.slow
def test_streaming_variant_runs_with_resnet34_and_says_its_settings_are_untuned(resnet34_env, sample, provisioned,
                                                                                caplog):
    from diaropt.pipelines.streaming import streaming_variant

    with caplog.at_level(logging.WARNING, logger="diaropt.core.config"):
        variant = streaming_variant("auto", step=5.0)
    assert "NOT tuned" in caplog.text
    assert variant.models["embedding_name"] == "resnet34"
    hyp, _ = variant.run(sample)
    _covers(hyp, sample)


# ---- the frozen online settings ----------------------------------------------------------

def test_resnet34_online_block_is_labelled_untuned(caplog):
    with caplog.at_level(logging.WARNING, logger="diaropt.core.config"):
        online = config.online_params("resnet34")
    assert online["tuned"] is None and online["carried_over_from"] == "campplus"
    cam = config.online_params("campplus")
    assert {k: online[k] for k in ("threshold", "step", "latency")} == {k: cam[k] for k in ("threshold", "step", "latency")}
    assert "NOT tuned" in caplog.text
    text = config.online_provenance("resnet34", online)
    assert "NOT tuned" in text and "tune --online --embedding resnet34" in text
    assert "tuned on the tune split" in config.online_provenance("campplus", cam)


def test_tuning_resnet34_online_replaces_the_untuned_block(tmp_path, caplog):
    from diaropt.measure.tuning import write_online

    cfg = tmp_path / "reference.yaml"
    cfg.write_text(config.CONFIG.read_text())
    before = yaml.safe_load(cfg.read_text())
    write_online("resnet34", {"threshold": 0.5, "step": 1.0, "latency": 5.0, "strict_der_on_tune_split": 0.3,
                              "files": 20, "profile": "full"}, config=cfg)
    with caplog.at_level(logging.WARNING, logger="diaropt.core.config"):
        online = config.online_params("resnet34", cfg)
    assert online["threshold"] == 0.5 and online["tuned"]["files"] == 20 and "carried_over_from" not in online
    assert "NOT tuned" not in caplog.text
    after = yaml.safe_load(cfg.read_text())
    assert after["campplus"] == before["campplus"]
    header = [line for line in config.CONFIG.read_text().splitlines() if line.startswith("#")]
    assert cfg.read_text().splitlines()[: len(header)] == header  # the comment header (what tuned: null means) stays


# ---- every chapter, smoke profile, ResNet34 (make test-resnet34) -------------------------

GLUE_REF = re.compile(r"\{glue(?::[a-z]+)?\}`([^`]+)`")


def _chapters():
    from diaropt.book.runner import notebooks_in_order

    return notebooks_in_order()


@pytest.fixture(scope="session")
def book_run(tmp_path_factory, resnet34_checkpoint):
    """One staging tree and one results folder shared by the chapters (a chapter that reads
    another's results finds them there), both temporary."""
    return tmp_path_factory.mktemp("resnet34-stage"), tmp_path_factory.mktemp("resnet34-results")


@pytest.mark.slow
@pytest.mark.resnet34
@pytest.mark.parametrize("notebook", _chapters(), ids=lambda p: p.stem)
def test_chapter_smoke_profile_runs_with_resnet34(notebook, book_run, resnet34_checkpoint, monkeypatch, provisioned):
    from diaropt.book import runner
    from diaropt.book.results import results_dir

    stage, results = book_run
    monkeypatch.setenv("DIAROPT_RESNET34", str(resnet34_checkpoint))
    monkeypatch.setenv("DIAROPT_RESULTS", str(results))  # random weights never reach _build/results
    assert results_dir() == results
    rc = runner.execute("smoke", notebooks=runner.notebooks_in_order(), stage=stage, only=[notebook.stem])
    out = stage / "notebooks" / notebook.name
    assert rc == 0, f"{notebook.name} failed with ResNet34 (see the captured output)"
    executed = json.loads(out.read_text())
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell did not run"
    text = json.dumps([c.get("outputs", []) for c in code])
    assert models.RANDOM_RESNET34_ID in text, "the chapter did not report the (random) ResNet34 choice"
    # every glue name the prose shows is glued on this path too (else the book build fails)
    glued = {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in code for o in c.get("outputs", [])}
    shown = {m.split(":")[0] for c in executed["cells"] if c["cell_type"] == "markdown"
             for m in GLUE_REF.findall("".join(c["source"]))}
    assert not shown - glued, f"shown in the prose but not glued with ResNet34: {sorted(shown - glued)}"
