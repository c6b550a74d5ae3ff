"""CPU settings are applied in a fresh process and do not change the model's output."""
import pytest

from diaropt.techniques import hardware


@pytest.mark.slow
def test_settings_are_applied_in_the_child_and_output_is_unchanged(provisioned):
    base = hardware.measure(hardware.CpuSetting("segmentation", threads=2), repeats=2)
    other = hardware.measure(hardware.CpuSetting("segmentation", threads=1, interop=2, mkldnn=False,
                                                 flush_denormal=True), repeats=2)
    assert (base["torch_threads"], base["interop_threads"]) == (2, 1)
    assert (other["torch_threads"], other["interop_threads"]) == (1, 2)
    assert other["checksum"] == pytest.approx(base["checksum"], rel=1e-4)
    assert base["median_ms"] > 0 and other["median_ms"] > 0


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="segmentation"):
        hardware.CpuSetting("no-such-model")


def test_a_failing_child_raises_with_its_message():
    with pytest.raises(RuntimeError, match="threads"):
        hardware.measure(hardware.CpuSetting("segmentation", threads=0), repeats=1)


def test_unknown_embedding_is_rejected():
    with pytest.raises(ValueError, match="embedding must be one of"):
        hardware.CpuSetting("embedding", embedding="ecapa")


def _fake_measure(calls, ms):
    def fake(setting, repeats=10, timeout=600):
        calls.append(setting)
        return {"model": setting.model, "threads": setting.threads, "median_ms": ms(setting), "iqr_ms": 0.1,
                "checksum": 5.0 if not setting.mkldnn else 1.0}
    return fake


def test_thread_scaling_is_relative_to_one_thread_per_model(monkeypatch):
    calls = []
    monkeypatch.setattr(hardware, "measure", _fake_measure(
        calls, lambda s: (100.0 if s.model == "segmentation" else 40.0) / min(s.threads, 2)))
    rows, scale = hardware.thread_scaling([1, 2, 3], repeats=2, embedding="resnet34")
    assert len(rows) == 6 and all(c.embedding == "resnet34" for c in calls)
    assert [(c.model, c.threads) for c in calls][:3] == [("segmentation", 1), ("segmentation", 2), ("segmentation", 3)]
    assert list(scale["speed-up vs 1 thread"]) == [1.0, 2.0, 2.0, 1.0, 2.0, 2.0]
    best = hardware.best_threads(scale)
    assert best.loc["segmentation", "threads"] == 2 and best.loc["embedding", "speed-up vs 1 thread"] == 2.0


def test_other_settings_change_one_thing_at_a_time(monkeypatch):
    calls = []
    monkeypatch.setattr(hardware, "measure", _fake_measure(calls, lambda s: 50.0 if s.interop == 2 else 100.0))
    table = hardware.other_settings(threads=4, repeats=2)
    assert all(c.threads == 4 for c in calls)
    seg = table.loc["segmentation"]
    assert list(seg.index) == ["default", "inter-op threads 2", "oneDNN (mkldnn) off", "flush denormals"]
    assert "channels-last (FCM head 2-D convs)" in table.loc["embedding"].index
    assert seg.loc["inter-op threads 2", "speed-up"] == 2.0
    assert not seg.loc["oneDNN (mkldnn) off", "same output"] and seg.loc["flush denormals", "same output"]
    labels = [label for label, _ in hardware.setting_changes("embedding", "resnet34")]
    assert labels[-1] == "channels-last (2-D convs)"
    assert all("channels" not in label for label, _ in hardware.setting_changes("segmentation"))
