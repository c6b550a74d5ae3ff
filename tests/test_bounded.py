"""Any length in bounded memory (``pipelines.bounded``, ``core.audio.FileSource``): identities with
pyannote's own code and with the in-memory path, never approximations."""
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import SlidingWindow, SlidingWindowFeature

from diaropt.core import data
from diaropt.core.audio import FileSource, QuietWarning, load_audio, open_audio
from diaropt.core.constants import SAMPLE_RATE
from diaropt.core.errors import AudioError
from diaropt.pipelines import bounded
from diaropt.pipelines.registry import get_variant


class _Reconstructor:  # what pyannote's reconstruct needs of ``self``
    to_diarization = staticmethod(SpeakerDiarization.to_diarization)


def _case(seed, chunks=60, step=0.25, clusters=7, max_count=3):
    """Random 0/1 local activities, hard clusters (with inactive -2s), and a frame count."""
    rng = np.random.default_rng(seed)
    seg = (rng.random((chunks, 589, 3)) < 0.3).astype(np.float32)
    seg[rng.random(seg.shape[:2]) < 0.05] = np.nan  # NaN frames, as pyannote's aggregate allows
    window = SlidingWindow(start=0.0, duration=10.0, step=10.0 * step)
    hard = rng.integers(-2, clusters, size=(chunks, 3))
    hard[hard == -1] = 0
    frames = SlidingWindow(start=0.0, duration=0.0619375, step=0.016875)
    total = int((10.0 + (chunks - 1) * 10.0 * step) / 0.016875)
    count = SlidingWindowFeature(rng.integers(0, max_count + 1, size=(total, 1)).astype(np.int8), frames)
    return SlidingWindowFeature(seg, window), hard, count


@pytest.mark.parametrize("seed,clusters,max_count", [(0, 7, 3), (1, 2, 3), (2, 1, 2), (3, 12, 2)])
def test_reconstruct_equals_pyannotes(seed, clusters, max_count):
    seg, hard, count = _case(seed, clusters=clusters, max_count=max_count)
    expected = SpeakerDiarization.reconstruct(_Reconstructor(), SlidingWindowFeature(seg.data.copy(), seg.sliding_window),
                                              hard.copy(), count)
    got = bounded.reconstruct(seg, hard, count)
    assert got.data.dtype == expected.data.dtype and got.data.shape == expected.data.shape
    assert np.array_equal(got.data, expected.data)
    assert (got.sliding_window.start, got.sliding_window.step) == (expected.sliding_window.start,
                                                                   expected.sliding_window.step)
    assert got.data.sum() > 0  # the case is not trivially empty


def test_reconstruct_top_speakers_in_blocks(monkeypatch):
    """Picking each frame's top speakers block by block gives the same as all at once."""
    seg, hard, count = _case(4)
    whole = bounded.reconstruct(seg, hard, count)
    monkeypatch.setattr(bounded, "TOP_BLOCK", 1000)
    assert np.array_equal(bounded.reconstruct(seg, hard, count).data, whole.data)


def _speechlike(seconds, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 1), ("PCM_24", 2)])
def test_file_source_reads_what_load_audio_reads(tmp_path, subtype, channels, monkeypatch):
    x = np.stack([_speechlike(3.3, c) for c in range(channels)], axis=1)
    path = tmp_path / "a.wav"
    sf.write(path, x, SAMPLE_RATE, subtype=subtype)
    monkeypatch.setattr("diaropt.core.audio.READ_BLOCK", 7919)  # the scan crosses many block edges
    src = FileSource(path, downmix=True)
    whole = load_audio(path, downmix=True)
    assert src.shape == tuple(whole.shape)
    assert torch.equal(src.load(), whole)
    assert torch.equal(src.read(12345, 40000), whole[:, 12345:40000])
    assert src.read(src.samples - 10, src.samples + 100).shape[-1] == 10  # cut to the file, not padded


def test_file_source_checks_like_load_audio(tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([_speechlike(1.0), _speechlike(1.0, 1)], axis=1), SAMPLE_RATE)
    with pytest.raises(AudioError, match="2 channels"):
        FileSource(stereo)
    short = tmp_path / "short.wav"
    sf.write(short, _speechlike(0.2), SAMPLE_RATE)
    with pytest.raises(AudioError, match="shorter than"):
        FileSource(short)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, 1e-4 * _speechlike(2.0), SAMPLE_RATE, subtype="FLOAT")
    with pytest.warns(QuietWarning):
        FileSource(quiet)
    nan = tmp_path / "nan.wav"
    y = _speechlike(2.0)
    y[5000] = np.nan
    sf.write(nan, y, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        FileSource(nan)
    full = tmp_path / "full.wav"
    sf.write(full, _speechlike(2.0), SAMPLE_RATE)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * SAMPLE_RATE])
    with pytest.raises(AudioError, match="truncated"):
        FileSource(cut)


def test_open_audio_reads_blocks_only_where_exact(tmp_path):
    wav, low = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(wav, _speechlike(1.0), SAMPLE_RATE)
    sf.write(low, _speechlike(0.5), 8000)  # 8000 samples: 1 s
    assert isinstance(open_audio(wav), FileSource)
    resampled = open_audio(low)
    assert isinstance(resampled, torch.Tensor) and resampled.shape[-1] == SAMPLE_RATE


def test_optimized_from_a_file_on_disk_equals_in_memory(provisioned, tmp_path):
    """The file read in blocks (windows, trunk blocks) gives the RTTM of the waveform in memory, and
    segmentation really was read from the file (not silently from a waveform)."""
    rec = data.pyannote_sample()
    wav, _ = data.write_recording(rec, tmp_path)
    variant = get_variant("optimized", embedding="campplus")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory, _ = variant.run(rec)
        reads = []
        src = FileSource(wav)
        original = src.read
        src.read = lambda a, b: reads.append((a, b)) or original(a, b)
        on_disk, _ = variant.run(data.Recording(rec.uri, src, None, None, "user", ""))
    assert reads and max(b - a for a, b in reads) < src.samples  # blocks, never the whole file
    assert on_disk.to_rttm() == in_memory.to_rttm()
    assert len(on_disk.labels()) == 2
