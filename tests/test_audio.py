import numpy as np
import pytest
import soundfile as sf
import torch

from diaropt.core.audio import ClippingWarning, load_audio, validate_waveform
from diaropt.core.errors import AudioError

SR = 16000


def tone(seconds=1.0, sr=SR, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_valid_mono_passes_and_is_channels_first():
    wav = validate_waveform(tone(), SR)
    assert wav.shape == (1, SR) and wav.dtype == torch.float32


def test_wrong_rate_is_refused_or_resampled_on_request():
    with pytest.raises(AudioError, match="44100 Hz"):
        validate_waveform(tone(sr=44100), 44100)
    wav = validate_waveform(tone(sr=44100), 44100, resample=True)
    assert wav.shape[-1] == SR


def test_stereo_is_refused_unless_downmixed():
    stereo = np.stack([tone(), tone(amp=0.1)])
    with pytest.raises(AudioError, match="2 channels"):
        validate_waveform(stereo, SR)
    wav = validate_waveform(stereo, SR, downmix=True)
    np.testing.assert_allclose(wav[0].numpy(), stereo.mean(0), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(0, np.float32), "empty"),
    (tone(0.2), "shorter than"),
    (np.full(SR, np.nan, np.float32), "NaN"),
    (tone(amp=3000.0), "peak amplitude"),
])
def test_bad_waveforms_get_clear_errors(bad, message):
    with pytest.raises(AudioError, match=message):
        validate_waveform(bad, SR)


def test_clipping_warns_but_passes():
    x = np.clip(tone(amp=2.0), -1, 1)
    with pytest.warns(ClippingWarning):
        validate_waveform(x, SR)


def test_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(sr=8000), 8000)
    assert load_audio(good).shape[-1] == SR  # resampled from 8 kHz
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(corrupt)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


def test_block_scan_counts_like_the_whole_array():
    """validate_waveform scans in blocks (no whole-file temporaries): same NaN count, peak and clipping."""
    from diaropt.core.audio import _scan

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, 100_003).astype(np.float32))
    x[[5, 70_000]] = float("nan")
    x[99_000] = float("inf")
    x[[10, 50_000, 80_001]] = 1.0
    bad, peak, clipped = _scan(x[None], block=4096)
    finite = x[torch.isfinite(x)]
    assert bad == 3
    assert peak == float(finite.abs().max()) == 1.0
    assert clipped == int((finite.abs() >= 0.999).sum())


def test_quiet_audio_warns_but_passes():
    from diaropt.core.audio import QuietWarning

    with pytest.warns(QuietWarning, match="-81 dBFS"):
        validate_waveform(tone(amp=10 ** (-81 / 20)), SR)


def test_a_truncated_wav_is_refused_and_an_open_ended_header_is_not(tmp_path):
    import struct

    from diaropt.core.audio import declared_wav_frames

    full = tmp_path / "full.wav"
    sf.write(full, tone(seconds=3.0), SR, subtype="PCM_16")
    data = full.read_bytes()
    assert declared_wav_frames(full) == 3 * SR
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) - SR])  # half a second of PCM_16 samples missing
    with pytest.raises(AudioError, match="truncated: the header declares 3.0 s, the file holds 2.5 s"):
        load_audio(cut)
    i = data.index(b"data")
    streaming = tmp_path / "streaming.wav"  # a writer that never filled in the length
    streaming.write_bytes(data[: i + 4] + struct.pack("<I", 0xFFFFFFFF) + data[i + 8: len(data) - SR])
    assert declared_wav_frames(streaming) is None
    flac = tmp_path / "x.flac"
    sf.write(flac, tone(), SR)
    assert declared_wav_frames(flac) is None


def test_the_band_detector_tells_telephone_audio_from_wideband_and_from_8_khz(tmp_path):
    """White noise spreads its energy evenly: about half of it (4-8 kHz of 0.05-8 kHz) lies above
    4 kHz and about 2 % below 200 Hz. Through the phone line of core.meetings almost none is left
    in either band: a telephone channel. Resampled through 8 kHz, the high band empties but the
    low one stays: not a telephone channel. Files read in blocks give the same shares as the
    tensor; silence has none (nan), and is not called a telephone channel."""
    import torchaudio

    from diaropt.core.audio import FileSource, band_shares, telephone_band
    from diaropt.core.meetings import telephone_band as phone_line

    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR * 30)).astype(np.float32)
    wide = band_shares(torch.from_numpy(noise)[None])
    assert 0.45 < wide["high"] < 0.55 and 0.01 < wide["low"] < 0.03
    phone = band_shares(torch.from_numpy(phone_line(noise.astype(np.float64))[: len(noise)].astype(np.float32))[None])
    assert phone["high"] < 1e-3 and phone["low"] < 1e-3
    narrow = band_shares(torchaudio.functional.resample(torchaudio.functional.resample(
        torch.from_numpy(noise)[None], SR, 8000), 8000, SR))
    assert narrow["high"] < 1e-2 and narrow["low"] > 0.01  # (the resampler's roll-off leaves a little above 4 kHz)
    cuts = {"low": 3e-3, "high": 1e-2}
    assert [telephone_band(s, cuts) for s in (wide, phone, narrow)] == [False, True, False]
    path = tmp_path / "noise.wav"
    sf.write(path, noise, SR, subtype="FLOAT")
    assert band_shares(FileSource(path)) == pytest.approx(wide, rel=1e-6)
    silent = band_shares(torch.zeros(1, SR * 5))
    assert np.isnan(silent["low"]) and not telephone_band(silent, cuts)
    assert np.isnan(band_shares(torch.zeros(1, 0))["high"])
