"""Convertible models and the CoreML round trip (conversion and compression run on Linux)."""
import numpy as np
import pytest
import torch

from diaropt.core import data, models
from diaropt.core.campplus import kaldi_fbank
from diaropt.core.constants import SEGMENTATION_FRAMES, WINDOW_SAMPLES
from diaropt.portable import coreml, plain
from diaropt.portable.fbank import ConvFbank


@pytest.fixture(scope="module")
def window():
    return data.pyannote_sample().waveform[:, :WINDOW_SAMPLES][None]


def test_conv_fbank_matches_kaldi(window):
    ref = kaldi_fbank(window[:, 0])
    out = ConvFbank()(window[:, 0])
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 5e-3
    assert (out - ref).abs().mean() < 1e-4


def test_integrated_embedding_equals_pyannote_masked_pooling(provisioned, window):
    emb = models.load_campplus()
    integrated = plain.CAMPPlusModule(models.load_campplus(), front="conv", output="speaker-embeddings")
    torch.manual_seed(0)
    masks = (torch.rand(1, 3, SEGMENTATION_FRAMES) > 0.4).float()
    with torch.inference_mode():
        ref = emb(window, weights=masks)
        out = integrated(window, masks)
    assert out.shape == (1, 3, 192)
    assert torch.nn.functional.cosine_similarity(out[0], ref[0]).min() > 0.9999


@pytest.fixture(scope="module")
def converted(provisioned, window):
    """segmentation-3.0 converted to CoreML (fp16) and palettized at 8 bits, once for this module."""
    seg = plain.PlainSegmentation(models.load_segmentation())
    ml, _ = coreml.convert(seg, (window,), ["audio"], "log_probs", "fp16")
    pal8, _ = coreml.compress(ml, "palettize 8-bit per tensor")
    return seg, ml, pal8


@pytest.mark.slow
def test_compressed_weights_round_trip(converted, window):
    seg, ml, pal8 = converted
    ops = coreml.op_histogram(ml)
    assert ops["lstm"] == 4 and ops["conv"] == 3
    new8, report = coreml.compressed_weights_into_torch(seg, pal8)
    assert {r["layout"] for r in report} >= {"identity", "lstm-gates"}
    assert max(r["relative error"] for r in report) < 0.02
    pal4, _ = coreml.compress(ml, "palettize 4-bit per tensor")
    new4, report4 = coreml.compressed_weights_into_torch(seg, pal4)
    # coarser codebook, larger weight error: the round trip carries the compression
    assert max(r["relative error"] for r in report4) > max(r["relative error"] for r in report)
    with torch.inference_mode():
        ref, out8 = seg(window), new8(window)
    agreement = (ref.argmax(-1) == out8.argmax(-1)).float().mean()
    assert agreement > 0.95
    # palettized values really are a small codebook
    w = dict(new4.named_parameters())["linear.0.weight"].detach().numpy()
    assert len(np.unique(w)) <= 16


def test_mismatched_weights_are_refused(converted):
    _, _, pal = converted
    other = plain.PlainSegmentation(models.load_segmentation())
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-3.0)
    with pytest.raises(RuntimeError, match="no torch parameter matches"):
        coreml.compressed_weights_into_torch(other, pal)
