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
