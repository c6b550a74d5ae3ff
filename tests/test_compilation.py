"""Chapter 04 (CoreML pass pipelines): what the guide's names and save mode are in coremltools 9."""
import pandas as pd
import pytest

pytest.importorskip("coremltools")

from diaropt.core.models import EmbeddingChoice  # noqa: E402
from diaropt.techniques import compilation  # noqa: E402


def test_guide_pass_names_are_registered_and_common_ones_default():
    names = compilation.pass_names_table()
    assert list(names.index) == compilation.GUIDE_PASSES
    assert names["registered in coremltools"].all()
    common = [p for p in compilation.GUIDE_PASSES if p.startswith("common::")]
    assert names.loc[common, "in the DEFAULT pipeline"].all()


def test_guide_pipeline_replaces_the_default():
    guide = compilation.pipelines()["guide's six passes"]()
    assert list(guide.passes) == compilation.GUIDE_PASSES
    default = compilation.pipelines()["DEFAULT"]()
    assert len(default.passes) > len(guide.passes)


def test_save_mode_probe():
    probe = compilation.save_mode_probe()
    assert set(probe) == {"SaveMode.MEMORY_MAPPED", "MLModel.save"}
    assert probe["MLModel.save"].startswith("(")


def test_pipeline_summary():
    idx = pd.MultiIndex.from_tuples([("seg", "DEFAULT"), ("seg", "guide's six passes"), ("emb", "DEFAULT"),
                                     ("emb", "guide's six passes")], names=["model", "pipeline"])
    passes = pd.DataFrame({"status": ["ok", "ok", "ok", "ValueError: boom"], "ops (non-const)": [100, 140, 50, None]},
                          index=idx)
    assert compilation.pipeline_summary(passes, "seg") == {"default_ops": 100, "guide_status": "ok", "guide_ops": 140}
    emb = compilation.pipeline_summary(passes, "emb")
    assert emb["guide_status"] == "ValueError: boom" and emb["guide_ops"] == "n/a"
    assert compilation.pipeline_summary(passes, "other", missing="why")["guide_status"] == "why"


def test_embedding_only_for_campplus():
    note = compilation.embedding_note(EmbeddingChoice("resnet34", "x", "test"))
    assert "CAM++ only" in note
