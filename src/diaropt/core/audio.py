"""Read and validate audio. Every waveform that enters a pipeline passes ``validate_waveform``.

Policy (documented in the book's Methods page):
- sample rate: files at another rate are resampled to 16 kHz with a logged notice
  (``load_audio(..., resample=True)``, the default); in-memory arrays at another rate are
  refused unless the caller asks to resample;
- more than one channel: refused unless ``downmix=True`` (mean of channels); the command line's
  ``diarize`` downmixes by default, as pyannote.audio does, and says so (``conversion_notes``);
- empty, shorter than ``MIN_DURATION``, NaN/inf, or amplitudes beyond [-1, 1]: refused;
- clipping (more than 0.1 % of samples at full scale), or a peak below -50 dBFS: accepted with a
  warning (the command line shows it);
- unreadable or corrupt files, and WAV files shorter than their header declares (a cut-off copy):
  refused with the reason.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .constants import MIN_DURATION, SAMPLE_RATE
from .errors import AudioError

log = logging.getLogger(__name__)

CLIP_LEVEL = 0.999
CLIP_FRACTION = 1e-3
QUIET_PEAK = 10 ** (-50 / 20)  # a peak below -50 dBFS: speech this faint is rarely diarized well


class ClippingWarning(UserWarning):
    """The audio has a noticeable share of samples at full scale."""


class QuietWarning(UserWarning):
    """The audio's peak is so low that speech may be missed."""


def _as_channels_first(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise AudioError(f"{name}: expected (samples,) or (channels, samples), got shape {tuple(t.shape)}")
    return t


def validate_waveform(waveform, sample_rate: int, *, name: str = "audio", resample: bool = False,
                      downmix: bool = False, min_duration: float = MIN_DURATION) -> torch.Tensor:
    """Check a waveform and return it as float32 (1, samples) at 16 kHz, or raise ``AudioError``."""
    wav = _as_channels_first(waveform, name)
    if wav.shape[0] > 1:
        if not downmix:
            raise AudioError(f"{name}: {wav.shape[0]} channels; diarization here takes mono audio. "
                             f"Pass downmix=True (CLI: --downmix) to average the channels.")
        wav = wav.mean(dim=0, keepdim=True)
    if wav.shape[-1] == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    bad, peak, clipped = _scan(wav)
    if bad:
        raise AudioError(f"{name}: {bad} NaN/inf samples; the file is corrupt or was decoded wrongly")
    if sample_rate != SAMPLE_RATE:
        if not resample:
            raise AudioError(f"{name}: sample rate {sample_rate} Hz, models expect {SAMPLE_RATE} Hz. "
                             f"Resample first, or pass resample=True.")
        import torchaudio.functional as AF

        log.info("%s: resampling %d Hz -> %d Hz", name, sample_rate, SAMPLE_RATE)
        wav = AF.resample(wav, sample_rate, SAMPLE_RATE)
        _, peak, clipped = _scan(wav)  # resampling changes the samples: scan them again
    _judge(name, wav.shape[-1], peak, clipped, min_duration)
    return wav.contiguous()


def _judge(name: str, samples: int, peak: float, clipped: int, min_duration: float) -> None:
    """The checks on a scanned 16 kHz waveform's length and level (errors and warnings)."""
    duration = samples / SAMPLE_RATE
    if duration < min_duration:
        raise AudioError(f"{name}: {duration:.3f} s of audio, shorter than the {min_duration} s minimum")
    if peak > 1.0 + 1e-4:
        raise AudioError(f"{name}: peak amplitude {peak:.1f} > 1: expected float audio in [-1, 1] "
                         f"(integer PCM must be scaled by 1/32768)")
    if clipped / samples > CLIP_FRACTION:
        warnings.warn(f"{name}: {100 * clipped / samples:.2f}% of samples at full scale (clipped); "
                      f"accuracy may suffer", ClippingWarning, stacklevel=3)
    if 0.0 < peak < QUIET_PEAK:
        warnings.warn(f"{name}: very quiet (peak {20 * np.log10(peak):.0f} dBFS); speech this faint may be missed or "
                      "merged into fewer speakers: normalise the level first", QuietWarning, stacklevel=3)


def _scan(wav: torch.Tensor, block: int = 1 << 22) -> tuple[int, float, int]:
    """(NaN/inf samples, peak |x| of the finite ones, samples at full scale), one block at a time:
    on a 4-hour file the whole-array forms (``abs()``, a float mask) were 1-2 GB of temporaries."""
    bad, peak, clipped = 0, 0.0, 0
    flat = wav.reshape(-1)
    for i in range(0, flat.shape[0], block):
        x = flat[i: i + block]
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad += int((~finite).sum())
            x = x[finite]
        if x.numel():
            a = x.abs()
            peak = max(peak, float(a.max()))
            clipped += int((a >= CLIP_LEVEL).sum())
    return bad, peak, clipped


def declared_wav_frames(path) -> int | None:
    """The number of frames a RIFF/WAVE header declares (its ``data`` chunk size over the block
    size), or None for another format, or a header that leaves the length open (0 or 0xFFFFFFFF,
    as streaming writers do)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def check_complete(path) -> None:
    """``AudioError`` for a WAV file shorter than its header says (a copy or a recording cut off):
    libsndfile reads what is there without a word, and the diarization would silently cover only
    part of the recording."""
    import soundfile

    declared = declared_wav_frames(path)
    if declared is None:
        return
    info = soundfile.info(str(path))
    if info.frames < declared:
        raise AudioError(f"{path}: truncated: the header declares {declared / info.samplerate:.1f} s, the file holds "
                         f"{info.frames / info.samplerate:.1f} s (an interrupted copy or recording?)")


# containers and encodings libsndfile seeks in exactly, sample for sample (MP3, Ogg and the ADPCM
# or G.72x encodings some WAV files carry are decoded whole instead)
SEEKABLE_FORMATS = frozenset({"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF", "AU"})
SEEKABLE_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"})
READ_BLOCK = 1 << 20  # samples per read when a file is scanned block by block (about 65 s)


class FileSource:
    """A validated audio file that stays on disk: its samples are read block by block when asked.

    The ``optimized`` pipeline diarizes from one (the long-recordings chapter): a 4-hour file
    decoded whole is 0.92 GB of float32, which alone was about a quarter of the process's
    peak memory. ``read(start, stop)`` returns the same float32 numbers as the whole file decoded
    by ``load_audio`` (libsndfile converts integer PCM sample by sample; channels are averaged
    the same way), so a pipeline reading blocks gives the same output as one given the whole
    waveform. Only for files at 16 kHz in a format libsndfile seeks exactly (``open_audio``
    decides); everything ``load_audio`` checks is checked here too, by one pass over the blocks,
    before any work starts.

    ``shape`` is ``(1, samples)``, as for the (1, samples) tensors it stands in for.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, path, *, downmix: bool = False, min_duration: float = MIN_DURATION):
        self.path = Path(path)
        name = str(self.path)
        info = _info(self.path)
        if not reads_in_blocks(info):
            raise ValueError(f"{name}: FileSource reads 16 kHz {'/'.join(sorted(SEEKABLE_FORMATS))} files "
                             f"({info.format}/{info.subtype} at {info.samplerate} Hz here); use load_audio")
        if info.channels > 1 and not downmix:
            raise AudioError(f"{name}: {info.channels} channels; diarization here takes mono audio. "
                             f"Pass downmix=True (CLI: --downmix) to average the channels.")
        if info.frames == 0:
            raise AudioError(f"{name}: empty audio (0 samples)")
        check_complete(self.path)
        self.samples, self.channels = int(info.frames), info.channels
        bad = peak = clipped = 0
        for start in range(0, self.samples, READ_BLOCK):
            b, p, c = _scan(self.read(start, start + READ_BLOCK))
            bad, peak, clipped = bad + b, max(peak, p), clipped + c
        if bad:
            raise AudioError(f"{name}: {bad} NaN/inf samples; the file is corrupt or was decoded wrongly")
        _judge(name, self.samples, peak, clipped, min_duration)

    @property
    def shape(self) -> tuple[int, int]:
        return (1, self.samples)

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``[start, stop)`` as float32 (1, n), cut to the file (no padding)."""
        start, stop = max(0, int(start)), min(self.samples, int(stop))
        if stop <= start:
            return torch.zeros(1, 0)
        try:
            data, _ = sf.read(str(self.path), start=start, stop=stop, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - libsndfile raises several types
            raise AudioError(f"{self.path}: cannot decode samples {start}-{stop} "
                             f"({str(e).strip() or type(e).__name__}); was the file changed?") from e
        if data.shape[0] != stop - start:
            raise AudioError(f"{self.path}: {data.shape[0]} samples where {stop - start} were expected at "
                             f"{start}; was the file changed while it was diarized?")
        x = torch.from_numpy(data.T)
        return (x.mean(dim=0, keepdim=True) if self.channels > 1 else x).contiguous()

    def load(self) -> torch.Tensor:
        """The whole waveform in memory (for pipelines that do not read blocks)."""
        return self.read(0, self.samples)


def _info(path: Path):
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        return sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"{path}: cannot decode audio ({str(e).strip() or type(e).__name__})") from e


def reads_in_blocks(info) -> bool:
    """Whether a file (its ``soundfile.info``) is read by ``FileSource``: 16 kHz, in a container and
    an encoding libsndfile seeks in exactly."""
    return (info.samplerate == SAMPLE_RATE and info.format in SEEKABLE_FORMATS
            and info.subtype in SEEKABLE_SUBTYPES)


def open_audio(path, *, resample: bool = True, downmix: bool = False) -> FileSource | torch.Tensor:
    """A ``FileSource`` for a 16 kHz file in a format read exactly by blocks, else the whole
    waveform from ``load_audio`` (resampled or compressed audio is decoded in memory)."""
    if reads_in_blocks(_info(Path(path))):
        return FileSource(path, downmix=downmix)
    return load_audio(path, resample=resample, downmix=downmix)


def load_audio(path, *, resample: bool = True, downmix: bool = False) -> torch.Tensor:
    """Read an audio file into a validated float32 (1, samples) tensor at 16 kHz."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"{path}: cannot decode audio ({e})") from e
    check_complete(path)
    return validate_waveform(data.T, sr, name=str(path), resample=resample, downmix=downmix)


def conversion_notes(path, *, downmix: bool = True) -> list[str]:
    """What ``load_audio(path, resample=True, downmix=downmix)`` changes in a file, in words, for a
    notice the user sees (the library only logs resampling, at INFO)."""
    info = sf.info(str(path))
    notes = []
    if info.channels > 1 and downmix:
        notes.append(f"downmixed {info.channels} channels to mono (mean)")
    if info.samplerate != SAMPLE_RATE:
        notes.append(f"resampled {info.samplerate} Hz -> {SAMPLE_RATE} Hz")
    return notes


def as_pyannote_input(waveform: torch.Tensor, uri: str = "audio") -> dict:
    """The in-memory form pyannote.audio accepts without decoding files."""
    return {"waveform": waveform, "sample_rate": SAMPLE_RATE, "uri": uri}


# ---- telephone-band input (chapter 90: the clustering of band-limited speech) ----------------

TELEPHONE_EDGE_HZ = 4000.0  # the Nyquist frequency of audio sampled at 8 kHz, as telephone lines carry it
TELEPHONE_LOW_HZ = 200.0  # below a telephone channel's 300 Hz lower edge, clear of its filter's transition
SPEECH_LOW_HZ = 50.0  # below this: hum and rumble, not speech


def band_shares(audio, *, excerpts: int = 4, excerpt_seconds: float = 5.0) -> dict[str, float]:
    """The shares of a recording's spectral energy (of all of it above ``SPEECH_LOW_HZ``) below
    ``TELEPHONE_LOW_HZ`` (``"low"``) and above ``TELEPHONE_EDGE_HZ`` (``"high"``), from Welch power
    spectra (``scipy.signal.welch``) of ``excerpts`` excerpts of ``excerpt_seconds`` spread evenly
    over it (fewer on a short file: they do not overlap), so a 4-hour file costs what a minute does
    (about 10 ms).

    ``audio``: a (1, samples) 16 kHz tensor or a ``FileSource``. Speech recorded wideband keeps
    fricatives and room noise above 4 kHz; audio sampled at 8 kHz (resampled) has almost nothing
    there, and a telephone channel (300-3400 Hz) has almost nothing below 200 Hz either, which
    tells a phone call from a plain 8 kHz recording. ``nan`` for digital silence."""
    from scipy.signal import welch

    total = int(audio.shape[-1])
    if total == 0:
        return {"low": float("nan"), "high": float("nan")}
    size = min(total, int(excerpt_seconds * SAMPLE_RATE))
    count = max(1, min(excerpts, total // size))
    starts = np.unique(np.linspace(0, total - size, count).astype(np.int64))
    read = audio.read if isinstance(audio, FileSource) else (lambda a, b: audio[..., a:b])
    power = None
    for s in starts:
        x = np.asarray(read(int(s), int(s) + size), dtype=np.float64).reshape(-1)
        freqs, p = welch(x, fs=SAMPLE_RATE, nperseg=min(1024, len(x)))
        power = p if power is None else power + p
    speech = power[freqs > SPEECH_LOW_HZ].sum()
    if not speech > 0:
        return {"low": float("nan"), "high": float("nan")}
    return {"low": float(power[(freqs > SPEECH_LOW_HZ) & (freqs < TELEPHONE_LOW_HZ)].sum() / speech),
            "high": float(power[freqs > TELEPHONE_EDGE_HZ].sum() / speech)}


def telephone_band(shares: dict[str, float], cuts: dict[str, float]) -> bool:
    """Whether ``band_shares`` describe a telephone channel: both shares below their ``cuts``
    (``core.config.telephone_params``); False for silence."""
    return bool(shares["low"] < cuts["low"] and shares["high"] < cuts["high"])
