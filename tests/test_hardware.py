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
    # in one process, settings interleaved: each call applies its own flags, outputs unchanged
    (one, two, off), = hardware.measure_groups([[hardware.CpuSetting("segmentation", threads=1),
                                                 hardware.CpuSetting("segmentation", threads=2),
                                                 hardware.CpuSetting("segmentation", threads=2, mkldnn=False)]], rounds=3)
    assert (one["torch_threads"], two["torch_threads"], off["torch_threads"]) == (1, 2, 2)  # as torch reports them
    assert (one["mkldnn"], off["mkldnn"]) == (True, False) and len(two["samples_ms"]) == 3 and two["rounds"] == 3
    assert two["checksum"] == pytest.approx(one["checksum"], rel=1e-4) == off["checksum"]


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="segmentation"):
        hardware.CpuSetting("no-such-model")


def test_a_failing_child_raises_with_its_message():
    with pytest.raises(RuntimeError, match="threads"):
        hardware.measure(hardware.CpuSetting("segmentation", threads=0), repeats=1)


def test_unknown_embedding_is_rejected():
    with pytest.raises(ValueError, match="embedding must be one of"):
        hardware.CpuSetting("embedding", embedding="ecapa")


def _fake_groups(calls, ms):
    """``measure_groups`` with ``ms(setting)`` ms per call, the same in every round."""
    def fake(groups, rounds=5, timeout=600):
        calls.append(groups)
        out = []
        for g in groups:
            base = ms(g[0])
            out.append([{"model": s.model, "threads": s.threads, "median_ms": ms(s), "iqr_ms": 0.1,
                         "samples_ms": [ms(s)] * rounds, "speed-up": base / ms(s), "speed-up low": base / ms(s),
                         "speed-up high": base / ms(s), "rounds": rounds, "unstable": False,
                         "checksum": 5.0 if not s.mkldnn else 1.0} for s in g])
        return out
    return fake


def test_thread_scaling_is_relative_to_one_thread_per_model(monkeypatch):
    calls = []
    monkeypatch.setattr(hardware, "measure_groups", _fake_groups(
        calls, lambda s: (100.0 if s.model == "segmentation" else 40.0) / min(s.threads, 2)))
    rows, scale = hardware.thread_scaling([1, 2, 3], repeats=3, embedding="resnet34")
    assert len(calls) == 1 and len(rows) == 6  # one process, the counts of each model interleaved
    assert all(s.embedding == "resnet34" for g in calls[0] for s in g)
    assert [(s.model, s.threads) for s in calls[0][0]] == [("segmentation", 1), ("segmentation", 2), ("segmentation", 3)]
    assert list(scale["speed-up vs 1 thread"]) == [1.0, 2.0, 2.0, 1.0, 2.0, 2.0]
    best = hardware.best_threads(scale)
    assert best.loc["segmentation", "threads"] == 2 and best.loc["embedding", "speed-up vs 1 thread"] == 2.0
    assert hardware.over_cores(scale, 2)["segmentation"].median == 1.0  # fastest at 2, the core count
    # fastest at 2 threads against a 1-core count: twice as fast, paired round by round
    assert hardware.over_cores(scale, 1)["embedding"].median == 2.0
    with pytest.raises(ValueError, match="start thread_counts with 1"):
        hardware.thread_scaling([2, 4], repeats=3)


def test_other_settings_change_one_thing_at_a_time(monkeypatch):
    calls = []
    monkeypatch.setattr(hardware, "measure_groups", _fake_groups(
        calls, lambda s: 50.0 if s.interop == 2 else (80.0 if not s.mkldnn else 100.0)))
    table = hardware.other_settings(threads=4, repeats=3)
    settings = [s for groups in calls for g in groups for s in g]
    assert all(s.threads == 4 for s in settings)
    # the runtime settings in one process; inter-op threads in processes of their own, default and changed in turn
    assert all(s.interop == 1 for g in calls[0] for s in g) and len(calls) == 1 + 2 * 3
    assert [g[0][0].interop for g in calls[1:]] == [1, 2] * 3
    seg = table.loc["segmentation"]
    assert list(seg.index) == ["default", "inter-op threads 2", "oneDNN (mkldnn) off", "flush denormals"]
    assert "channels-last (FCM head 2-D convs)" in table.loc["embedding"].index
    assert seg.loc["inter-op threads 2", "speed-up"] == 2.0 and seg.loc["oneDNN (mkldnn) off", "speed-up"] == 1.25
    assert not seg.loc["oneDNN (mkldnn) off", "same output"] and seg.loc["flush denormals", "same output"]
    ratios = hardware.setting_ratios(table)
    assert ratios[("segmentation", "inter-op threads 2")].median == 2.0 and ("segmentation", "default") not in ratios
    labels = [label for label, _ in hardware.setting_changes("embedding", "resnet34")]
    assert labels[-1] == "channels-last (2-D convs)"
    assert all("channels" not in label for label, _ in hardware.setting_changes("segmentation"))


def test_one_process_has_one_interop_count():
    with pytest.raises(ValueError, match="one inter-op thread count"):
        hardware.measure_groups([[hardware.CpuSetting("segmentation")], [hardware.CpuSetting("embedding", interop=2)]])
