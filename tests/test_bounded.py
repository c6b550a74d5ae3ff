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


def _case(seed, chunks=60, step=0.25, clusters=7, max_count=3, soft=False):
    """Random 0/1 (or ``soft``: any) local activities, hard clusters (with inactive -2s), and a frame count."""
    rng = np.random.default_rng(seed)
    seg = rng.random((chunks, 589, 3)).astype(np.float32) if soft else (rng.random((chunks, 589, 3)) < 0.3).astype(np.float32)
    seg[rng.random(seg.shape[:2]) < 0.05] = np.nan  # NaN frames, as pyannote's aggregate allows
    window = SlidingWindow(start=0.0, duration=10.0, step=10.0 * step)
    hard = rng.integers(-2, clusters, size=(chunks, 3))
    hard[hard == -1] = 0
    frames = SlidingWindow(start=0.0, duration=0.0619375, step=0.016875)
    total = int((10.0 + (chunks - 1) * 10.0 * step) / 0.016875)
    count = SlidingWindowFeature(rng.integers(0, max_count + 1, size=(total, 1)).astype(np.int8), frames)
    return SlidingWindowFeature(seg, window), hard, count


@pytest.mark.parametrize("seed,clusters,max_count,chunks,soft", [(0, 7, 3, 60, False), (1, 2, 3, 60, False),
                                                                 (2, 1, 2, 60, False), (3, 12, 2, 60, False),
                                                                 (5, 3, 2, 1, False), (6, 4, 3, 40, True)])
def test_reconstruct_equals_pyannotes(seed, clusters, max_count, chunks, soft):
    seg, hard, count = _case(seed, chunks=chunks, clusters=clusters, max_count=max_count, soft=soft)
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


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 1), ("PCM_24", 2), ("FLOAT", 3)])
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
    adpcm = tmp_path / "adpcm.wav"  # a WAV container whose encoding libsndfile cannot seek in exactly
    sf.write(adpcm, _speechlike(1.0), SAMPLE_RATE, subtype="IMA_ADPCM")
    assert isinstance(open_audio(adpcm), torch.Tensor)


def test_a_file_changed_after_its_checks_is_an_audio_error(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _speechlike(3.0), SAMPLE_RATE)
    src = FileSource(path)
    sf.write(path, _speechlike(1.0), SAMPLE_RATE)  # replaced by a shorter recording
    with pytest.raises(AudioError, match="changed"):
        src.read(0, src.samples)


@pytest.fixture(scope="module")
def optimized(provisioned):
    return get_variant("optimized", embedding="campplus")


@pytest.mark.parametrize("seconds", [23.7, 7.0])  # six complete windows and a padded one; only a padded one
def test_windows_read_from_disk_equal_pyannotes_slide(optimized, tmp_path, seconds):
    rec = data.pyannote_sample()
    path = tmp_path / "cut.wav"
    sf.write(path, rec.waveform[0, : int(seconds * SAMPLE_RATE)].numpy(), SAMPLE_RATE, subtype="FLOAT")
    inference = optimized.pipeline._segmentation
    calls = []
    got = bounded.slide_segmentation(inference, FileSource(path), lambda **kw: calls.append(kw))
    expected = inference.slide(load_audio(path), SAMPLE_RATE, hook=None)
    assert got.data.shape == expected.data.shape and np.array_equal(got.data, expected.data)
    assert (got.sliding_window.step, got.sliding_window.duration) == (expected.sliding_window.step,
                                                                      expected.sliding_window.duration)
    assert calls[-1]["completed"] == calls[-1]["total"] == got.data.shape[0]


def test_optimized_from_a_file_on_disk_equals_pyannote_in_memory(optimized, tmp_path, monkeypatch):
    """The file read in blocks (windows, trunk blocks) and reconstructed by ``bounded`` gives the
    output of the waveform in memory reconstructed by pyannote's own code, on a cut whose last
    window is padded; and the file really was read in blocks (not silently as a waveform)."""
    from diaropt.pipelines import trunks

    rec = data.pyannote_sample()
    cut = data.Recording(rec.uri, rec.waveform[:, : int(23.7 * SAMPLE_RATE)], None, None, "user", "")
    wav = tmp_path / "cut.wav"
    sf.write(wav, cut.waveform[0].numpy(), SAMPLE_RATE, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with monkeypatch.context() as m:
            m.setattr(trunks.BlockTrunkDiarization, "reconstruct", SpeakerDiarization.reconstruct)
            in_memory, _ = optimized.run(cut)
        reads = []
        src = FileSource(wav)
        original = src.read
        src.read = lambda a, b: reads.append((a, b)) or original(a, b)
        on_disk, _ = optimized.run(data.Recording(rec.uri, src, None, None, "user", ""))
    assert reads and max(b - a for a, b in reads) < src.samples  # blocks, never the whole file
    assert list(on_disk.itertracks(yield_label=True)) == list(in_memory.itertracks(yield_label=True))
    assert len(on_disk.labels()) == 2
