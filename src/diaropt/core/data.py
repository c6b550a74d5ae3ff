"""Benchmark data: real AMI excerpts, pyannote's sample, and seeded simulated conversations.

The evaluation audio lives read-only in ``$DIAROPT_DATA`` (default ``../shared/eval-data``
next to the repository) and is verified against its ``MANIFEST.tsv`` sha256 before use.

Splits (the reference pipeline is tuned on ``tune`` only and reported on ``test``):
- ``tune``: AMI ``trn00``-``trn09`` + conversations simulated from speaker half A;
- ``test``: AMI ``dev00``, ``dev01``, pyannote's ``sample.wav`` + conversations from half B.
Halves: the multi-utterance speakers (LibriSpeech test-other, speechocean762), sorted by id and
assigned alternately, so no speaker is in both splits.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from pyannote.core import Annotation, Segment, Timeline

from .audio import load_audio
from .constants import REPO_ROOT, SAMPLE_RATE, WINDOW_SAMPLES
from .errors import DataError


def data_dir() -> Path:
    """``$DIAROPT_DATA`` or ``../shared/eval-data`` beside the repository."""
    path = Path(os.environ.get("DIAROPT_DATA", REPO_ROOT.parent / "shared" / "eval-data"))
    if not (path / "MANIFEST.tsv").exists():
        raise DataError(f"no evaluation data at {path} (MANIFEST.tsv missing): set DIAROPT_DATA "
                        f"to the eval-data folder.")
    return path


@functools.cache
def manifest() -> dict[str, dict]:
    """{relative path: {sha256, seconds, speaker}} from MANIFEST.tsv."""
    rows = {}
    lines = (data_dir() / "MANIFEST.tsv").read_text().splitlines()
    for line in lines[1:]:
        path, sha, seconds, speaker = line.split("\t")
        rows[path] = {"sha256": sha, "seconds": float(seconds), "speaker": speaker}
    return rows


@functools.cache
def verified_path(rel: str) -> Path:
    """Absolute path of a manifest file after checking its sha256 (once per process)."""
    entry = manifest().get(rel)
    if entry is None:
        raise DataError(f"{rel} is not in {data_dir() / 'MANIFEST.tsv'}")
    path = data_dir() / rel
    if not path.exists():
        raise DataError(f"{path} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry['sha256']})")
    return path


@dataclass
class Recording:
    """One benchmark file: audio, reference speaker turns and the scored region."""

    uri: str
    waveform: torch.Tensor  # (1, samples) float32 at 16 kHz, or a core.audio.FileSource (same shape)
    reference: Annotation
    uem: Timeline
    source: str  # "ami", "pyannote-sample", "simulated"
    split: str
    meta: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.waveform.shape[-1] / SAMPLE_RATE

    def as_pyannote_file(self) -> dict:
        return {"waveform": self.waveform, "sample_rate": SAMPLE_RATE, "uri": self.uri,
                "annotation": self.reference, "annotated": self.uem}


# ------------------------------------------------------------------------------------------
# real recordings


def _read_rttm(path: Path) -> dict[str, Annotation]:
    from pyannote.database.util import load_rttm

    return load_rttm(str(path))


def _read_uem(path: Path) -> dict[str, Timeline]:
    from pyannote.database.util import load_uem

    return load_uem(str(path))


def ami_recordings(split: str) -> list[Recording]:
    """AMI excerpts: ``tune`` = debug.train (trn00-09), ``test`` = debug.development (dev00-01)."""
    subset = {"tune": "train", "test": "development"}[split]
    folder = data_dir() / "ami-debug"
    rttm = _read_rttm(folder / f"debug.{subset}.rttm")
    uem = _read_uem(folder / f"debug.{subset}.uem")
    uris = (folder / f"debug.{subset}.lst").read_text().split()
    recs = []
    for uri in uris:
        wav = load_audio(verified_path(f"ami-debug/{uri}.wav"))
        recs.append(Recording(uri, wav, rttm[uri], uem[uri], "ami", split))
    return recs


def pyannote_sample() -> Recording:
    """The 30 s two-speaker ``sample.wav`` + ``sample.rttm`` shipped in pyannote.audio's wheel
    (read with soundfile: importing ``pyannote.audio.sample`` would decode at import time)."""
    import importlib.util

    spec = importlib.util.find_spec("pyannote.audio")
    folder = Path(spec.origin).parent / "sample"
    wav = load_audio(folder / "sample.wav")
    ref = _read_rttm(folder / "sample.rttm")["sample"]
    uem = Timeline([Segment(0.0, wav.shape[-1] / SAMPLE_RATE)])
    return Recording("sample", wav, ref, uem, "pyannote-sample", "test")


# ------------------------------------------------------------------------------------------
# single-speaker utterances


@functools.cache
def speakers_with_utterances(min_utterances: int = 10) -> dict[str, list[str]]:
    """{speaker: [relative paths]} for speakers with at least ``min_utterances`` files."""
    by_spk: dict[str, list[str]] = {}
    for rel, row in manifest().items():
        if row["speaker"] != "multi":
            by_spk.setdefault(row["speaker"], []).append(rel)
    return {s: sorted(p) for s, p in sorted(by_spk.items()) if len(p) >= min_utterances}


def speaker_halves() -> tuple[list[str], list[str]]:
    """Disjoint speaker halves (A for tuning, B for testing), alternating over sorted ids."""
    spk = sorted(speakers_with_utterances())
    return spk[0::2], spk[1::2]


@functools.lru_cache(maxsize=4096)
def _utterance(rel: str) -> np.ndarray:
    return load_audio(verified_path(rel))[0].numpy()


# ------------------------------------------------------------------------------------------
# conversation simulator


def speech_regions(x: np.ndarray, sr: int = SAMPLE_RATE, *, rel_db: float = -35.0,
                   min_silence: float = 0.3, min_speech: float = 0.1) -> list[tuple[float, float]]:
    """Energy-based speech regions of a single-speaker utterance (seconds).

    Non-overlapping 10 ms frames whose RMS is within ``rel_db`` of the loudest frame are speech
    (so boundaries are exact to one frame); gaps shorter than ``min_silence`` are bridged and
    regions shorter than ``min_speech`` dropped.
    """
    hop = int(0.010 * sr)
    n = len(x) // hop
    if n == 0:
        return []
    energy = np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    db = 10 * np.log10(energy + 1e-12)
    active = db > max(db.max() + rel_db, -70.0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(int), [0]])))
    regions: list[list[float]] = []
    for start, end in zip(edges[0::2], edges[1::2]):
        s, e = start * hop / sr, min(end * hop, len(x)) / sr
        if regions and s - regions[-1][1] < min_silence:
            regions[-1][1] = e
        else:
            regions.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in regions if e - s >= min_speech]


@dataclass(frozen=True)
class ConversationRecipe:
    """How one conversation is composed. All randomness comes from ``seed``."""

    n_speakers: int = 3
    duration: float = 60.0  # target length in seconds (the last turn may run past it)
    turn_seconds: tuple[float, float] = (1.0, 8.0)  # turns longer than the max are cropped
    pause_seconds: tuple[float, float] = (0.1, 1.0)
    overlap_ratio: float = 0.15  # probability that a turn starts before the previous one ends
    overlap_seconds: tuple[float, float] = (0.3, 1.5)
    gain_db: float = 3.0  # per-turn gain drawn from [-gain_db, +gain_db]
    snr_db: float | None = None  # additive white noise; None = clean
    seed: int = 0


def simulate_conversation(recipe: ConversationRecipe, speakers: list[str], uri: str,
                          utterances: dict[str, list[str]] | None = None,
                          load=None) -> Recording:
    """Compose a multi-speaker recording from real single-speaker utterances.

    The reference RTTM holds, for each placed turn, the speech regions (``speech_regions``) of
    exactly the audio placed, shifted to where it was placed: labels are exact by construction
    up to the 10 ms frame of the energy detector.
    """
    if not 2 <= recipe.n_speakers <= len(speakers):
        raise ValueError(f"n_speakers={recipe.n_speakers} needs 2..{len(speakers)} speakers")
    utterances = utterances or speakers_with_utterances()
    load = load or _utterance
    rng = np.random.default_rng(recipe.seed)
    chosen = [speakers[i] for i in rng.choice(len(speakers), recipe.n_speakers, replace=False)]
    queues = {s: list(rng.permutation(utterances[s])) for s in chosen}
    placed: list[tuple[str, int, np.ndarray]] = []
    cursor, last_speaker, last_len = 0.0, None, 0.0
    while cursor < recipe.duration:
        speaker = rng.choice([s for s in chosen if s != last_speaker])
        if not queues[speaker]:
            queues[speaker] = list(rng.permutation(utterances[speaker]))
        x = load(queues[speaker].pop())
        max_len = int(rng.uniform(*recipe.turn_seconds) * SAMPLE_RATE)
        if len(x) > max_len:
            offset = int(rng.integers(0, len(x) - max_len + 1))
            x = x[offset: offset + max_len]
        x = x * 10 ** (rng.uniform(-recipe.gain_db, recipe.gain_db) / 20)
        if placed and rng.random() < recipe.overlap_ratio:
            ov = min(rng.uniform(*recipe.overlap_seconds), 0.5 * last_len, 0.5 * len(x) / SAMPLE_RATE)
            start = max(0.0, cursor - ov)
        else:
            start = cursor + (rng.uniform(*recipe.pause_seconds) if placed else 0.25)
        start_idx = int(round(start * SAMPLE_RATE))
        placed.append((speaker, start_idx, x))
        cursor = (start_idx + len(x)) / SAMPLE_RATE
        last_speaker, last_len = speaker, len(x) / SAMPLE_RATE
    total = max(i + len(x) for _, i, x in placed) + int(0.25 * SAMPLE_RATE)
    mix = np.zeros(total, dtype=np.float64)
    reference = Annotation(uri=uri)
    for speaker, idx, x in placed:
        mix[idx: idx + len(x)] += x
        for s, e in speech_regions(x):
            reference[Segment(idx / SAMPLE_RATE + s, idx / SAMPLE_RATE + e), len(reference)] = speaker
    if recipe.snr_db is not None:
        power = np.mean(mix[np.abs(mix) > 0] ** 2) if np.any(mix) else 0.0
        mix += rng.normal(0, np.sqrt(power / 10 ** (recipe.snr_db / 10)), size=total)
    peak = np.abs(mix).max()
    if peak > 0.9:
        mix *= 0.9 / peak
    wav = torch.from_numpy(mix.astype(np.float32)).unsqueeze(0)
    reference = reference.support()  # merge contiguous turns of the same speaker
    uem = Timeline([Segment(0.0, total / SAMPLE_RATE)])
    return Recording(uri, wav, reference, uem, "simulated", "", meta={"recipe": recipe.__dict__,
                                                                     "speakers": chosen})


def conversation_recipes(split: str, count: int, duration: float) -> list[ConversationRecipe]:
    """The benchmark's recipes: 2-5 speakers cycling, every other one with 25 dB noise."""
    base = {"tune": 1000, "test": 2000}[split]
    return [ConversationRecipe(n_speakers=2 + i % 4, duration=duration, seed=base + i,
                               snr_db=25.0 if i % 2 else None,
                               overlap_ratio=0.1 + 0.05 * (i % 3))
            for i in range(count)]


def simulated_conversations(split: str, count: int, duration: float) -> list[Recording]:
    half_a, half_b = speaker_halves()
    speakers = half_a if split == "tune" else half_b
    recs = []
    for i, recipe in enumerate(conversation_recipes(split, count, duration)):
        rec = simulate_conversation(recipe, speakers, uri=f"sim-{split}-{i:02d}")
        rec.split = split
        recs.append(rec)
    return recs


@functools.cache
def adult_speakers() -> frozenset[str]:
    """Speakers known to be adults: every LibriSpeech reader, and the speechocean762 speakers
    aged 18 or more (``meta/selected_speakers.tsv``)."""
    ages = {}
    meta = data_dir() / "speechocean762" / "meta" / "selected_speakers.tsv"
    for line in meta.read_text().splitlines()[1:]:
        spk, age, _ = line.split("\t")
        ages[f"speechocean762-{spk}"] = int(age)
    return frozenset(s for s in speakers_with_utterances() if s.startswith("librispeech-") or ages.get(s, 0) >= 18)


LONG_SPEAKERS = 6  # voices in a long meeting (the long-recordings chapter)


def long_meeting(minutes: float, seed: int = 0) -> Recording:
    """A long meeting for the long-recordings chapter: ``LONG_SPEAKERS`` adult voices of the test
    half, taking turns of real read speech with pauses and 10 % overlapping starts, for
    ``minutes`` minutes (the simulator of ``simulate_conversation``; utterances repeat once a
    speaker's are used up). The same seed gives the same meeting, and a longer meeting with the
    same seed starts with the shorter one's turns."""
    speakers = sorted(set(speaker_halves()[1]) & adult_speakers())
    recipe = ConversationRecipe(n_speakers=LONG_SPEAKERS, duration=60.0 * minutes, overlap_ratio=0.1,
                                seed=9000 + seed)
    rec = simulate_conversation(recipe, speakers, uri=f"meeting-{minutes:g}min")
    rec.split = "long"
    return rec


# Benchmark profiles: full = the published numbers, smoke = a subset that runs within a minute.
PROFILES = {
    "full": {"sim_count": 10, "sim_duration": 60.0, "ami": True, "sample": True},
    "smoke": {"sim_count": 1, "sim_duration": 20.0, "ami": False, "sample": True},
}


def benchmark_set(split: str = "test", profile: str = "full") -> list[Recording]:
    """The benchmark recordings of a split ("tune" or "test") under a profile."""
    if split not in ("tune", "test"):
        raise ValueError("split must be 'tune' or 'test'")
    cfg = PROFILES[profile]
    recs: list[Recording] = []
    if cfg["ami"]:
        recs += ami_recordings(split)
    if cfg["sample"] and split == "test":
        recs.append(pyannote_sample())
    recs += simulated_conversations(split, cfg["sim_count"], cfg["sim_duration"])
    return recs


def write_recording(rec: Recording, folder: Path, subtype: str = "FLOAT") -> tuple[Path, Path]:
    """Write ``<uri>.wav`` (16 kHz float; ``subtype="PCM_16"`` as recorders write it, half the size)
    and ``<uri>.rttm``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wav, rttm = folder / f"{rec.uri}.wav", folder / f"{rec.uri}.rttm"
    sf.write(str(wav), rec.waveform[0].numpy(), SAMPLE_RATE, subtype=subtype)
    with open(rttm, "w") as f:
        rec.reference.write_rttm(f)
    return wav, rttm


def describe(recs: list[Recording]) -> list[dict]:
    """One row per recording for tables."""
    return [{"uri": r.uri, "source": r.source, "split": r.split, "seconds": round(r.duration, 2),
             "speakers": len(r.reference.labels()),
             "overlap %": round(100 * _overlap(r.reference) / max(r.reference.get_timeline().support().duration(), 1e-9), 1)}
            for r in recs]


def _overlap(ann: Annotation) -> float:
    """Seconds where two or more speakers talk at once."""
    segs = sorted(ann.get_timeline())
    overlaps = Timeline()
    for i, a in enumerate(segs):
        for b in segs[i + 1:]:
            if b.start >= a.end:
                break
            if a & b:
                overlaps.add(a & b)
    return overlaps.support().duration()


def real_windows(recs: list[Recording], step: float = 5.0, limit: int | None = None) -> torch.Tensor:
    """10 s windows (N, 1, WINDOW_SAMPLES) cut from recordings every ``step`` seconds (zero-padded)."""
    out = []
    for rec in recs:
        x = rec.waveform[0]
        for start in range(0, max(1, x.shape[-1] - WINDOW_SAMPLES + 1), int(step * SAMPLE_RATE)):
            w = x[start: start + WINDOW_SAMPLES]
            out.append(torch.nn.functional.pad(w, (0, WINDOW_SAMPLES - w.shape[-1])))
            if limit and len(out) >= limit:
                return torch.stack(out)[:, None]
    return torch.stack(out)[:, None]
