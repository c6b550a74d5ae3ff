"""Tuning and re-clustering on cached networks (``measure.tuning``): the cache must not change
the output, the networks must run once per file, and each setting must really be applied."""
import pytest

from diaropt.core import data, metrics
from diaropt.measure import tuning
from diaropt.pipelines import reference as pipeline
from diaropt.pipelines.trunks import BlockTrunkDiarization, SharedTrunkDiarization, build_shared_trunk_pipeline


@pytest.fixture
def embedding_calls(monkeypatch):
    """The uri of every file the shared or block trunk's embedding network runs on, in call order."""
    calls = []
    for cls in (SharedTrunkDiarization, BlockTrunkDiarization):
        def counted(self, file, *args, original=cls._embeddings):
            calls.append(file["uri"])
            return original(self, file, *args)

        monkeypatch.setattr(cls, "_embeddings", counted)
    return calls


def test_clustering_runs_reuse_the_networks_and_apply_each_setting(provisioned, embedding_calls):
    rec = data.pyannote_sample()  # two speakers
    calls = embedding_calls
    runs = tuning.clustering_runs([rec], {
        "frozen": {},
        "one cluster": {"clustering": {"threshold": 2.0}},  # unit vectors are at most 2 apart: all merge
        "true count": {"clustering": {"threshold": 2.0}, "oracle_count": True},
        "frozen again": {},  # nothing of the earlier settings may stay behind
    }, progress=False)
    assert calls == [rec.uri]  # the embedding network ran once for four settings
    der = {k: run["totals"]["der_strict"] for k, run in runs.items()}
    # one cluster: pyannote pads an empty second column where two people overlap, so the count
    # can stay 2, but the speech of both speakers goes to one label
    assert der["one cluster"] > der["frozen"] + 0.2
    assert der["true count"] < der["one cluster"] - 0.2 and runs["true count"]["files"][0]["speakers_hyp"] == 2
    assert der["frozen again"] == der["frozen"]
    assert runs["one cluster"]["clustering"]["threshold"] == 2.0 and runs["true count"]["oracle_count"]
    # the cached path gives what a fresh run of the harness (not in training mode) gives
    fresh, _ = pipeline.run_pyannote(build_shared_trunk_pipeline("campplus", skip_inactive=True), rec)
    again = tuning.clustering_runs([rec], {"frozen": {}}, progress=False)["frozen"]
    assert again["files"][0]["der_strict"] == pytest.approx(metrics.der(rec.reference, fresh, rec.uem, "strict"))
    assert runs["frozen"]["totals"]["der_strict"] == again["totals"]["der_strict"]


def test_write_tuned_freezes_both_values_and_their_provenance(tmp_path):
    import shutil

    import yaml

    from diaropt.core.config import CONFIG, reference_params

    cfg = tmp_path / "reference.yaml"
    shutil.copy(CONFIG, cfg)
    tuned = {"threshold": 0.61, "min_cluster_size": 3, "loss": 0.2512345, "start": {"threshold": 0.7, "min_cluster_size": 12},
             "n_iterations": 5, "files": ["a", "b"], "minutes": 12.04, "profile": "smoke", "seed": 0, "split": "tune"}
    tuning.write_tuned("campplus", tuned, cfg)
    got = reference_params("campplus", cfg)["clustering"]
    assert (got["threshold"], got["min_cluster_size"], got["method"]) == (0.61, 3, "centroid")
    block = yaml.safe_load(cfg.read_text())["campplus"]["tuned"]
    assert block["tuned"] == ["threshold", "min_cluster_size"] and block["files"] == 2
    assert block["started_from"] == {"threshold": 0.7, "min_cluster_size": 12}
    assert cfg.read_text().startswith("#")  # the comment header is kept
    assert yaml.safe_load(cfg.read_text())["resnet34"] == yaml.safe_load(CONFIG.read_text())["resnet34"]


def test_cached_embeddings_belong_to_the_pipeline_that_made_them(provisioned):
    """A file dict cached by one pipeline and passed to another (here one whose embedding is
    replaced) must not hand the second pipeline the first one's embeddings."""
    import numpy as np
    import torch

    class Fixed(torch.nn.Module):
        def forward(self, w, m):
            return torch.full((w.shape[0], m.shape[1], 192), 0.5)

    f = data.pyannote_sample().as_pyannote_file()
    first = tuning.harness_pipeline()
    seg = first.get_segmentations(f)
    real = first.get_embeddings(f, seg, exclude_overlap=True)
    other = build_shared_trunk_pipeline("campplus", skip_inactive=True, integrated=Fixed())
    other.training = True
    replaced = other.get_embeddings(f, seg, exclude_overlap=True)
    done = ~np.isnan(replaced)
    assert done.any() and np.all(replaced[done] == 0.5) and not np.allclose(real[done], 0.5)
    assert first.get_embeddings(f, seg, exclude_overlap=True) is not replaced  # recomputed, not the other's


def test_networks_in_threads_give_what_one_pipeline_gives(provisioned, embedding_calls):
    import dataclasses

    sample = data.pyannote_sample()
    recs = [sample, dataclasses.replace(sample, uri="sample-again", waveform=sample.waveform[:, : 16000 * 20])]
    calls = embedding_calls
    settings = {"frozen": {}, "true count": {"oracle_count": True}}
    one = tuning.clustering_runs(recs, settings, progress=False)
    two = tuning.clustering_runs(recs, settings, progress=False, workers=2)
    assert sorted(calls) == sorted([r.uri for r in recs] * 2)  # once per file in each run, none by the parent
    for name in settings:
        assert [f["der_strict"] for f in two[name]["files"]] == pytest.approx([f["der_strict"] for f in one[name]["files"]])
        assert [f["speakers_hyp"] for f in two[name]["files"]] == [f["speakers_hyp"] for f in one[name]["files"]]


def test_choose_step_takes_the_coarsest_step_within_the_tolerance(monkeypatch):
    """The dev-split rule: the coarsest step whose strict DER is within 0.5 points of the finest."""
    import diaropt.measure.benchmark as benchmark
    import diaropt.pipelines.optimized as optimized

    der = {0.1: 0.250, 0.2: 0.262, 0.25: 0.253, 0.5: 0.300}  # 0.2 is 1.2 points worse, 0.25 only 0.3
    monkeypatch.setattr(optimized, "optimized_variant", lambda embedding, segmentation_step: segmentation_step)

    def fake_run(step, **kwargs):
        return {"totals": {"rtfx": 10 * step, "der_strict": der[step], "der_fluidaudio": der[step] / 2,
                           "speakers_hyp_mean": 2.0, "speakers_ref_mean": 2.0}}

    monkeypatch.setattr(benchmark, "run_benchmark", fake_run)
    rows, chosen = tuning.choose_step([], [0.5, 0.25, 0.1, 0.2], profile="smoke", tolerance=0.5)
    assert chosen == 0.25
    assert [r["step (s)"] for r in rows] == [1.0, 2.0, 2.5, 5.0]
    assert [r["within tolerance"] for r in rows] == [True, False, True, False]
    assert rows[3]["Δ strict vs finest (pts)"] == pytest.approx(5.0)
    rows, chosen = tuning.choose_step([], [0.1, 0.2, 0.25, 0.5], profile="smoke", tolerance=10.0)
    assert chosen == 0.5
    with pytest.raises(ValueError):
        tuning.choose_step([], [], profile="smoke", tolerance=0.5)


def test_stock_pyannote_at_a_coarser_step_is_reproduced_by_the_harness(provisioned):
    """ablation.stock_at_step: pyannote's own pipeline at 2.5 s and the exact harness at 2.5 s give
    the same diarization (reference_with_harness raises otherwise), and the step is really used."""
    from diaropt.measure import ablation

    rec = data.pyannote_sample()
    stock = ablation.stock_at_step([rec], timed_files=1, profile="smoke", embedding="campplus", segmentation_step=0.25)
    assert stock["variant"] == "reference, step 2.5 s" and stock["totals"]["harness"] == "shared-trunk-skip, step 2.5 s"
    assert stock["totals"]["harness_identical_files"] == 1
    fine, _ = pipeline.run_pyannote(build_shared_trunk_pipeline("campplus", skip_inactive=True), rec)
    coarse, _ = pipeline.run_pyannote(build_shared_trunk_pipeline("campplus", skip_inactive=True, segmentation_step=0.25), rec)
    assert metrics.der(fine, coarse, rec.uem, "strict") > 0  # a different step gives another output


def test_optimized_moves_the_minimum_cluster_size_to_its_step(tmp_path):
    """The minimum cluster size counts embeddings, one per window and speaker: moved to a coarser
    step it must stand for the same seconds of speech; a configured optimized block wins."""
    import yaml

    from diaropt.core.config import CONFIG, optimized_params, reference_params, rescaled

    assert rescaled({"min_cluster_size": 12, "threshold": 0.7}, 0.1, 0.25) == {"min_cluster_size": 5, "threshold": 0.7}
    assert rescaled({"min_cluster_size": 2}, 0.1, 0.5)["min_cluster_size"] == 1  # never below one
    assert rescaled({"min_cluster_size": 5}, 0.1, 0.2)["min_cluster_size"] == 3  # 2.5: half up
    assert rescaled({"min_cluster_size": 12}, 0.1, 0.05)["min_cluster_size"] == 20  # pyannote's maximum
    cfg = tmp_path / "reference.yaml"
    whole = yaml.safe_load(CONFIG.read_text())
    whole["campplus"].pop("optimized", None)  # what a config without optimized's own values gives
    cfg.write_text(yaml.safe_dump(whole))
    ref = reference_params("campplus", cfg)["clustering"]
    got = optimized_params("campplus", 0.25, cfg)["clustering"]
    assert got["min_cluster_size"] == round(ref["min_cluster_size"] * 0.1 / 0.25)
    assert got["threshold"] == ref["threshold"] and got["method"] == ref["method"]
    tuned = {"threshold": 0.5, "min_cluster_size": 6, "loss": 0.2, "start": {}, "n_iterations": 1, "files": ["a"],
             "minutes": 1.0, "profile": "smoke", "seed": 0, "split": "tune", "pipeline": "optimized"}
    tuning.write_tuned("campplus", tuned, cfg)
    assert reference_params("campplus", cfg)["clustering"] == ref  # the reference's values are untouched
    assert optimized_params("campplus", 0.25, cfg)["clustering"]["min_cluster_size"] == 6
    coarser = optimized_params("campplus", 0.5, cfg)["clustering"]
    assert (coarser["min_cluster_size"], coarser["threshold"]) == (3, 0.5)  # the same seconds at another step


def test_optimized_clustering_candidates_are_really_applied(provisioned, embedding_calls):
    """choose_clustering runs optimized's networks once, re-clusters with each candidate, and the
    pipeline the CLI builds carries the rescaled size (pyannote could silently keep another)."""
    from diaropt.core.config import optimized_params
    from diaropt.pipelines.optimized import OPTIMIZED, build_optimized_pipeline

    rec = data.pyannote_sample()  # two speakers
    candidates = tuning.clustering_candidates("campplus")
    assert set(candidates) == {"the reference's values as they are", "minimum size rescaled to the same seconds"}
    candidates["one cluster"] = {"threshold": 2.0, "min_cluster_size": 1}
    rows, chosen = tuning.choose_clustering([rec], candidates, embedding="campplus")
    assert embedding_calls == [rec.uri]
    der = {r["candidate"]: r["DER strict (%)"] for r in rows}
    assert der["one cluster"] > der["minimum size rescaled to the same seconds"] + 20 and chosen != "one cluster"
    assert [r["min cluster size"] for r in rows][-1] == 1
    pipe = build_optimized_pipeline("campplus", runtime="torch")
    expected = optimized_params("campplus", OPTIMIZED["segmentation_step"])["clustering"]["min_cluster_size"]
    assert pipe.clustering.min_cluster_size == expected < 12


def test_block_trunk_recomputes_after_its_trunk_is_replaced(provisioned):
    """The training-mode cache of the block trunk (optimized's re-tuning, the quantization DER
    runs) must not hand back embeddings made by the trunk it had before ``set_trunk``."""
    import numpy as np
    import torch

    from diaropt.pipelines.optimized import build_block_trunk_pipeline
    from diaropt.pipelines.trunks import trunk_and_pool

    f = data.pyannote_sample().as_pyannote_file()
    pipe = build_block_trunk_pipeline("campplus")
    pipe.training = True
    seg = pipe.get_segmentations(f)
    first = pipe.get_embeddings(f, seg, exclude_overlap=True)
    assert pipe.get_embeddings(f, seg, exclude_overlap=True) is first  # cached
    frames, _ = trunk_and_pool(pipe._embedding.model_)
    pipe.set_trunk(frames, lambda fr, m: torch.full((fr.shape[0], m.shape[1], 192), 0.5))
    again = pipe.get_embeddings(f, seg, exclude_overlap=True)
    done = ~np.isnan(again)
    assert done.any() and np.all(again[done] == 0.5) and not np.allclose(first[done], 0.5)


def test_band_limited_input_is_really_clustered_with_the_telephone_values(provisioned):
    """The switch of BlockTrunkDiarization: a file the detector calls band-limited is clustered
    with the telephone values (here ones that split it into many speakers), the pipeline's
    own values are back afterwards, and a file it calls wideband gets the pipeline's own output.
    band_runs gives both diarizations from one pass of the networks."""
    from diaropt.core.meetings import telephone_copy
    from diaropt.pipelines.optimized import build_optimized_pipeline
    from diaropt.pipelines.reference import run_pyannote

    rec = telephone_copy(data.pyannote_sample())  # two speakers, through a phone line
    pipe = build_optimized_pipeline("campplus", runtime="torch", telephone=False)
    assert pipe.band_clustering is None
    own = pipe.clustering.threshold, pipe.clustering.min_cluster_size
    plain, _ = run_pyannote(pipe, rec)
    assert pipe.band_decision is None
    split = {"threshold": 0.01, "min_cluster_size": 1}
    pipe.set_band_clustering(split, {"low": 1.0, "high": 1.0})  # every file counts as telephone-band
    many, _ = run_pyannote(pipe, rec)
    assert len(many.labels()) > len(plain.labels()) + 1
    assert pipe.band_decision["telephone"] and pipe.band_decision["clustering"] == split
    assert (pipe.clustering.threshold, pipe.clustering.min_cluster_size) == own
    pipe.set_band_clustering(split, {"low": 0.0, "high": 0.0})  # no file does
    again, _ = run_pyannote(pipe, rec)
    assert not pipe.band_decision["telephone"] and metrics.der(plain, again) == 0.0
    with pytest.raises(ValueError, match="cuts"):
        pipe.set_band_clustering(split, None)


def test_telephone_values_are_read_from_the_config_at_their_step(tmp_path):
    import yaml

    from diaropt.core.config import CONFIG, telephone_params

    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["campplus"].pop("telephone", None)
    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert telephone_params("campplus", 0.25, path) is None
    cfg["campplus"]["telephone"] = {"clustering": {"threshold": 0.6, "min_cluster_size": 5}, "step": 0.25,
                                    "cuts": {"low": 3e-3, "high": 4e-5}}
    path.write_text(yaml.safe_dump(cfg))
    assert telephone_params("campplus", 0.25, path) == {"clustering": {"threshold": 0.6, "min_cluster_size": 5},
                                                        "cuts": {"low": 3e-3, "high": 4e-5}}
    assert telephone_params("campplus", 0.5, path)["clustering"]["min_cluster_size"] == 3  # the same seconds of speech
