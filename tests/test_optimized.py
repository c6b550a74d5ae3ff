"""The block trunk and the optimized pipeline: exact where exactness is claimed, checked
against the reference where it is an approximation."""
import numpy as np
import pytest
import torch

from diaropt.core import data, metrics, models
from diaropt.pipelines import trunks as block_trunk
from diaropt.pipelines.registry import get_variant
from diaropt.pipelines.trunks import trunk_and_pool
from diaropt.portable import onnx, plain
from diaropt.portable.plain import PlainSegmentation


@pytest.fixture(scope="module")
def sample():
    return data.pyannote_sample()


@pytest.fixture(scope="module")
def emb(provisioned):
    return models.choose_embedding("campplus").model


def test_window_frames_pads_and_aligns():
    frames = torch.arange(12, dtype=torch.float32).reshape(1, 12)  # 3 blocks of 4 frames, 10 s each
    assert block_trunk.window_frames(frames, 4, 0.0, 10.0).tolist() == [[0, 1, 2, 3]]
    assert block_trunk.window_frames(frames, 4, 5.0, 10.0).tolist() == [[2, 3, 4, 5]]
    assert block_trunk.window_frames(frames, 4, 25.0, 10.0).tolist() == [[10, 11, 0, 0]]


@pytest.mark.parametrize("batch", [1, 3])
def test_on_demand_block_frames_equal_the_whole_file_frames_and_are_computed_once(batch):
    """BlockFrames (what the pipeline now uses, memory bounded) against block_frames + window_frames
    (the whole file's frames at once): the same numbers for every window of a 47.3 s file at a
    2.5 s step, each group of blocks computed once, and only a few blocks alive at a time."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 5, kernel_size=400, stride=160)  # a stand-in trunk: (B, 1, N) -> (B, 5, T)
    calls = []

    def frames_of(x):
        calls.append(x.shape[0])
        return conv(x)

    wav = torch.randn(1, int(47.3 * 16000))
    with torch.inference_mode():
        whole, per_block = block_trunk.block_frames(frames_of, wav, batch=batch)
        calls.clear()
        blocks = block_trunk.BlockFrames(frames_of, wav, batch=batch)
        alive = 0
        for start in np.arange(0.0, 47.3, 2.5):
            blocks.release_before(start)
            got = blocks.window(float(start))
            assert torch.equal(got, block_trunk.window_frames(whole, per_block, float(start), 10.0)), start
            alive = max(alive, len(blocks.groups))
    assert blocks.computed == len(calls) == -(-5 // batch)  # 5 blocks of 10 s, in groups of `batch`
    assert alive <= 2


@pytest.mark.slow
def test_block_frames_equal_window_trunk_on_aligned_windows(emb, sample):
    frames_of, _ = trunk_and_pool(emb)
    wav = sample.waveform[:, :320000]  # two whole blocks
    with torch.inference_mode():
        frames, per_block = block_trunk.block_frames(frames_of, wav)
        direct = frames_of(wav[:, 160000:][None])[0]
    got = block_trunk.window_frames(frames, per_block, 10.0, 10.0)
    assert torch.allclose(got, direct, atol=1e-5)


@pytest.mark.slow
def test_onnx_runtime_models_match_torch(emb, sample, tmp_path):
    seg = models.load_segmentation()
    x = sample.waveform[:, :160000][None]
    with torch.inference_mode():
        ref_seg = PlainSegmentation(seg)(x)
        ref_frames = plain.CAMPPlusModule(emb, front="conv", output="frames")(x)
    ort_seg = onnx.ort_segmentation(seg, tmp_path)(x)
    ort_frames = onnx.ort_trunk(emb, tmp_path)(x)
    assert torch.equal(ort_seg.argmax(-1), ref_seg.argmax(-1))
    assert (ort_seg - ref_seg).abs().max() < 1e-3
    cos = torch.nn.functional.cosine_similarity(ort_frames.flatten(), ref_frames.flatten(), dim=0)
    assert cos > 0.9999


@pytest.mark.slow
def test_optimized_variant_diarizes_the_sample_and_leaves_the_reference_alone(sample):
    ref = get_variant("reference", embedding="campplus")
    opt = get_variant("optimized", embedding="campplus")
    hyp_opt, stages = opt.run(sample)
    hyp_ref, _ = ref.run(sample)  # the reference built first is unaffected by the ONNX swap
    der_opt = metrics.der(sample.reference, hyp_opt, sample.uem)
    der_ref = metrics.der(sample.reference, hyp_ref, sample.uem)
    assert len(hyp_opt.labels()) == 2
    assert der_opt < 0.2 and der_ref < 0.2
    assert stages["total"] > 0 and np.isfinite(stages["embedding"])
