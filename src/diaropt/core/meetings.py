"""Realistic conversations for three speaker-disjoint splits, from lhotse's meeting simulator.

The first test set of this book was 12 minutes, 87 % simulated by a hand-written recipe that
alternated speakers strictly, cropped turns mid-word, never paused long, never reverberated, and
7 of its 12 simulated voices were children. A 1-point DER change on it is a few seconds of
speech. This module builds the sets the verdicts should rest on:

1. **Voices** (``split_speakers``): adults only: the 10 LibriSpeech test-other readers (5 women,
   5 men, ``SPEAKERS.TXT``) and the speechocean762 speakers aged 18 or more (``meta/``). Each
   (corpus, sex) stratum is sorted by speaker id and dealt test, tune, test, dev, tune, test, …
   so the splits are disjoint by speaker and hold the same mix of corpora and sexes (test 1/2,
   tune 1/3, dev 1/6 of every stratum).
2. **Turns** (``utterance_cut``): every single-speaker file becomes a lhotse cut trimmed to its
   speech, its supervisions the speech regions inside it (``data.speech_regions``, a 10 ms
   energy detector): reference labels are exact by construction. Turns are whole utterances,
   never cut mid-word.
3. **Timing** (``fitted_simulator``): lhotse's ``ConversationalMeetingSimulator``, the method of
   Landini et al. (2022): pauses between turns of the same speaker, pauses between speakers and
   overlaps between speakers are drawn from histograms fitted on real meetings, here the AMI
   reference RTTMs of the tune split (``trn00``-``trn09``), never those of the test split.
4. **Who talks how much** (``meeting_plans``): 2 to 6 speakers, 3 to 10 minutes (log-uniform,
   so short meetings are more common and a split holds more files), talk time
   shared unequally (Dirichlet shares, each speaker at least half an equal share). A speaker
   with less speech than a meeting needs repeats utterances, once all of them were used.
5. **Acoustics**: every conversation has one condition, in turn: clean; reverberant (lhotse's
   fast random room impulse responses, one room per meeting, one source position per speaker);
   telephone (two speakers, 8 kHz, 300-3400 Hz band, 8-bit mu-law, as a phone line delivers
   it, resampled back to 16 kHz as pyannote does with an 8 kHz file); noisy (pink noise at
   10-20 dB SNR over the speech); reverberant and noisy.
6. **What repeats**: a voice has about a minute of speech, less than a long meeting asks of it,
   so its utterances are said again once all were used (``times each utterance is said`` in
   each meeting's facts and in the split table). The context of a repeat differs (other
   neighbours, overlaps, room position), but the audio is the same: that is a limit of the
   material.

Everything is seeded: the same split and profile give the same audio and labels on every
machine (``random``'s, ``numpy``'s and ``torch``'s global generators are seeded around each
lhotse call, because lhotse's samplers, scipy's ``rvs`` and lhotse's room impulse generator
draw from them, and the caller's states are restored). Built meetings are kept under
``_build/data`` (``$DIAROPT_MEETINGS``), keyed by everything that defines them, so the chapters
of one build simulate each meeting once.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from pyannote.core import Annotation, Segment, Timeline

from .constants import REPO_ROOT, SAMPLE_RATE
from .data import (
    Recording,
    _read_rttm,
    adult_speakers,
    ami_recordings,
    data_dir,
    manifest,
    pyannote_sample,
    speakers_with_utterances,
    speech_regions,
    verified_path,
)
from .errors import DataError

SPLITS = ("tune", "dev", "test")
DEAL = ("test", "tune", "test", "dev", "tune", "test")  # within each (corpus, sex) stratum
CONDITIONS = ("clean", "reverberant", "telephone", "noisy", "reverberant+noisy")
SPEAKER_COUNTS = (2, 3, 4, 5, 6)
MINUTES = (3.0, 10.0)
SNR_DB = (10.0, 20.0)
TELEPHONE_RATE, TELEPHONE_BAND = 8000, (300.0, 3400.0)
SEEDS = {"tune": 31_000, "dev": 32_000, "test": 33_000}
# simulated minutes per split; the real files (AMI, pyannote's sample) come on top
TARGET_MINUTES = {"full": {"tune": 26.0, "dev": 15.5, "test": 44.0},
                  "smoke": {"tune": 0.9, "dev": 0.9, "test": 0.9}}  # one meeting each
SMOKE_MINUTES = 1.0  # one short meeting per split in the smoke profile
VERSION = 1  # bump when the recipe changes: it is part of the cache key


# ---- voices --------------------------------------------------------------------------------

def _corpus(speaker: str) -> str:
    return speaker.split("-")[0]


@functools.cache
def speaker_sex() -> dict[str, str]:
    """{speaker: "f"/"m"} for the adult speakers with ten or more utterances."""
    sex = {}
    for line in (data_dir() / "speechocean762" / "meta" / "selected_speakers.tsv").read_text().splitlines()[1:]:
        spk, _, gender = line.split("\t")
        sex[f"speechocean762-{spk}"] = gender.strip().lower()
    for line in (data_dir() / "librispeech" / "librispeech_test-other" / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        spk, gender = (f.strip() for f in line.split("|")[:2])
        sex[f"librispeech-{spk}"] = gender.lower()
    return {s: sex[s] for s in adult_speakers() if s in sex}


@functools.cache
def split_speakers() -> dict[str, tuple[str, ...]]:
    """{split: adult speakers}, disjoint, each (corpus, sex) stratum dealt by ``DEAL``."""
    sexes = speaker_sex()
    missing = sorted(set(adult_speakers()) - set(sexes))
    if missing:
        raise DataError(f"no sex recorded for {missing[:3]}...: the splits could not be balanced")
    strata: dict[tuple[str, str], list[str]] = {}
    for spk in sorted(sexes):
        strata.setdefault((_corpus(spk), sexes[spk]), []).append(spk)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for members in strata.values():
        for i, spk in enumerate(members):
            out[DEAL[i % len(DEAL)]].append(spk)
    return {s: tuple(sorted(v)) for s, v in out.items()}


# ---- turns ---------------------------------------------------------------------------------

@functools.cache
def utterance_cut(rel: str):
    """A lhotse ``MonoCut`` of one single-speaker file, trimmed to its speech, whose supervisions
    are the speech regions inside it (``None`` when the detector finds no speech)."""
    from lhotse import Recording as LhotseRecording
    from lhotse import SupervisionSegment

    path = verified_path(rel)
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise DataError(f"{path}: {sr} Hz, the evaluation data is {SAMPLE_RATE} Hz")
    regions = speech_regions(audio[:, 0])
    if not regions:
        return None
    speaker = manifest()[rel]["speaker"]
    rec = LhotseRecording.from_file(str(path), recording_id=rel.replace("/", "__"))
    start, end = regions[0][0], min(regions[-1][1], rec.duration)
    sups = [SupervisionSegment(id=f"{rec.id}-{k}", recording_id=rec.id, start=s - start, duration=e - s,
                               speaker=speaker) for k, (s, e) in enumerate(regions)]
    cut = rec.to_cut().truncate(offset=start, duration=end - start, preserve_id=True)
    cut.supervisions = sups
    return cut


# ---- timing --------------------------------------------------------------------------------

@functools.cache
def fitted_simulator():
    """lhotse's ``ConversationalMeetingSimulator`` fitted on the AMI tune references."""
    from lhotse import SupervisionSegment, SupervisionSet
    from lhotse.workflows.meeting_simulation import ConversationalMeetingSimulator

    folder = data_dir() / "ami-debug"
    sups = []
    for uri, ann in sorted(_read_rttm(folder / "debug.train.rttm").items()):
        for k, (seg, _, label) in enumerate(ann.itertracks(yield_label=True)):
            sups.append(SupervisionSegment(id=f"{uri}-{k}", recording_id=uri, start=seg.start,
                                           duration=seg.duration, speaker=str(label)))
    sim = ConversationalMeetingSimulator()
    with _quiet():
        sim.fit(SupervisionSet.from_segments(sups))
    return sim


@contextlib.contextmanager
def _quiet():
    """lhotse prints its fitted parameters and draws progress bars; keep the chapters' output clean."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed the global generators lhotse uses (``random``, ``numpy``, ``torch``), run torch on one
    thread, and give the caller's states and threads back afterwards. One thread: the room
    impulse generator scatters reflections with an indexed write whose result on duplicate
    indices depends on the thread split, so two threads rendered two different rooms."""
    state, threads = (random.getstate(), np.random.get_state()), torch.get_num_threads()
    with torch.random.fork_rng():
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            random.setstate(state[0])
            np.random.set_state(state[1])


# ---- plans ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeetingPlan:
    """One conversation: who, how long, which acoustics; every random draw comes from ``seed``."""

    uri: str
    split: str
    speakers: tuple[str, ...]
    shares: tuple[float, ...]  # of the talk time, one per speaker
    minutes: float  # planned length (pauses are drawn, so the result differs a little)
    condition: str
    seed: int


def meeting_plans(split: str, profile: str = "full") -> list[MeetingPlan]:
    """The conversations of a split: planned lengths add up to ``TARGET_MINUTES`` (plus 5 %);
    speakers are drawn among the split's voices, the least used first."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng(SEEDS[split])
    voices = list(split_speakers()[split])
    used = dict.fromkeys(voices, 0)
    plans, total, i, j = [], 0.0, 0, 0
    target = TARGET_MINUTES[profile][split] * 1.05
    while total < target:
        condition = CONDITIONS[i % len(CONDITIONS)]
        if condition == "telephone":
            n = 2  # a two-person call
        else:  # the speaker counts cycle over the other meetings
            n, j = SPEAKER_COUNTS[j % len(SPEAKER_COUNTS)], j + 1
        # log-uniform: short meetings are more common, and more files give tighter intervals
        minutes = SMOKE_MINUTES if profile == "smoke" else float(np.round(np.exp(rng.uniform(*np.log(MINUTES))), 1))
        order = sorted((str(v) for v in rng.permutation(voices)), key=lambda s: used[s])  # random among equals
        chosen = tuple(order[:n])
        for s in chosen:
            used[s] += 1
        floor = 0.5 / n  # everyone says at least half an equal share; the rest is shared unequally
        shares = tuple(float(x) for x in np.round(floor + (1 - n * floor) * rng.dirichlet(np.full(n, 2.0)), 4))
        plans.append(MeetingPlan(f"{split}-{i:02d}-{condition}", split, chosen, shares, minutes, condition,
                                 SEEDS[split] + i))
        total += minutes
        i += 1
    return plans


# ---- rendering -----------------------------------------------------------------------------

# talk time budget as a share of the planned length: the pauses fitted on AMI (about 2-3 s between
# turns) leave about two thirds of a two-person meeting to speech; with more speakers more turns
# overlap, so each extra speaker adds to the budget (measured on rendered meetings)
SPEECH_FRACTION, PER_EXTRA_SPEAKER = 0.65, 0.04


def _turns(plan: MeetingPlan):
    """The cuts each speaker says (unique ids), cycling through a seeded order of their files."""
    utterances = speakers_with_utterances()
    rng = random.Random(plan.seed)
    cuts = []
    for spk, share in zip(plan.speakers, plan.shares):
        pool = [c for c in (utterance_cut(rel) for rel in utterances[spk]) if c is not None]
        if not pool:
            raise DataError(f"{spk}: no speech found in any of its files")
        rng.shuffle(pool)
        fraction = SPEECH_FRACTION + PER_EXTRA_SPEAKER * (len(plan.speakers) - 2)
        budget, said, k = share * plan.minutes * 60.0 * fraction, 0.0, 0
        while said < budget:
            cut = pool[k % len(pool)]
            cuts.append(cut.with_id(f"{cut.id}-{plan.uri}-{k}"))
            said += cut.duration
            k += 1
    return cuts


PINK_FROM_HZ = 50.0  # below this the noise is flat: a 1/f shape down to 1/duration would put most of
# its power in sub-audible drift, and the SNR would overstate the audible noise


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise whose power falls as 1/f from ``PINK_FROM_HZ`` up (flat below it)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), PINK_FROM_HZ)
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / np.std(x)


def telephone_band(x: np.ndarray) -> np.ndarray:
    """A 16 kHz signal as a phone line delivers it, back at 16 kHz: resampled to 8 kHz,
    band-limited to 300-3400 Hz, 8-bit mu-law coded and decoded, resampled to 16 kHz."""
    import torchaudio.functional as AF
    from scipy.signal import butter, resample_poly, sosfiltfilt

    narrow = resample_poly(x, TELEPHONE_RATE, SAMPLE_RATE)
    sos = butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    narrow = sosfiltfilt(sos, narrow)
    peak = max(np.abs(narrow).max(), 1e-9)
    coded = AF.mu_law_encoding(torch.from_numpy(narrow / peak).float().clamp(-1, 1), 256)
    narrow = AF.mu_law_decoding(coded, 256).numpy().astype(np.float64) * peak
    return resample_poly(narrow, SAMPLE_RATE, TELEPHONE_RATE)


def is_telephone(rec: Recording) -> bool:
    """Whether a recording was rendered telephone-band (its ``meta["condition"]``), as the
    splits' telephone meetings and the copies ``telephone_copy`` makes are."""
    return "telephone" in rec.meta.get("condition", rec.source)


def telephone_copy(rec: Recording) -> Recording:
    """The same recording as a phone line would deliver it (``telephone_band``), with the same uri,
    reference and scored region, so that a diarization of the copy pairs file by file with one of
    the original (``measure.stats.der_change``); ``meta["condition"]`` says what was done. What a
    user's 8 kHz call becomes once resampled to 16 kHz."""
    import dataclasses

    x = rec.waveform[0].numpy().astype(np.float64)
    y = telephone_band(x)[: len(x)]
    y = np.pad(y, (0, len(x) - len(y)))
    peak = np.abs(y).max()
    if peak > 0.9:
        y *= 0.9 / peak
    condition = rec.meta.get("condition", rec.source)
    return dataclasses.replace(rec, waveform=torch.from_numpy(y.astype(np.float32))[None],
                               meta=rec.meta | {"condition": f"{condition}, through a phone line"})


@dataclass
class Layout:
    """A planned meeting without its audio: its length, reference and facts (the split table
    needs no more, and gets it without rendering a sample)."""

    uri: str
    split: str
    duration: float
    reference: Annotation
    meta: dict
    source: str = "simulated"


def _arrange(plan: MeetingPlan):
    """(lhotse MixedCut, reference, facts): who says what when, before any audio is rendered."""
    from lhotse import CutSet

    turns = _turns(plan)
    sim = fitted_simulator()
    with _seeded(plan.seed), _quiet():
        meeting = sim.simulate(CutSet.from_cuts(turns), num_repeats=1, num_speakers_per_meeting=len(plan.speakers),
                               max_duration_per_speaker=1e9, max_utterances_per_speaker=10**6, seed=plan.seed)
    if len(meeting) != 1:
        raise DataError(f"{plan.uri}: lhotse made {len(meeting)} meetings from one plan")
    mixed = next(iter(meeting))
    said = [t.id.split("-" + plan.uri)[0] for t in turns]
    facts: dict = {"condition": plan.condition,
                   # utterances are repeated once a voice's files are used up: how often, on average
                   "times each utterance is said": round(len(said) / len(set(said)), 2)}
    reference = Annotation(uri=plan.uri)
    for k, sup in enumerate(mixed.supervisions):
        reference[Segment(round(sup.start, 3), round(sup.end, 3)), k] = sup.speaker
    return mixed, reference.support().crop(Segment(0, mixed.duration)), facts


def layout(plan: MeetingPlan) -> Layout:
    """The meeting's timeline and labels, exactly those ``render`` gives, without the audio."""
    mixed, reference, facts = _arrange(plan)
    return Layout(plan.uri, plan.split, mixed.duration, reference,
                  facts | {"speakers": list(plan.speakers)})


def render(plan: MeetingPlan) -> tuple[np.ndarray, Annotation, dict]:
    """(16 kHz mono samples, reference, facts) of one planned meeting."""
    from lhotse.utils import fastcopy

    mixed, reference, facts = _arrange(plan)
    if "reverberant" in plan.condition:
        tracks = [fastcopy(t, cut=t.cut.reverb_rir(room_rng_seed=plan.seed, source_rng_seed=plan.seed * 8 + k))
                  for k, t in enumerate(mixed.tracks)]
        mixed = fastcopy(mixed, tracks=tracks)
    with _seeded(plan.seed):  # lhotse's room impulse generator draws from torch's global generator
        x = mixed.load_audio()[0].astype(np.float64)
    rng = np.random.default_rng(plan.seed)
    if "noisy" in plan.condition:
        snr = float(rng.uniform(*SNR_DB))
        speech = Timeline(list(reference.get_timeline().support()))
        mask = np.zeros(len(x), bool)
        for seg in speech:
            mask[int(seg.start * SAMPLE_RATE): int(seg.end * SAMPLE_RATE)] = True
        power = np.mean(x[mask] ** 2) if mask.any() else np.mean(x ** 2)
        x = x + _pink_noise(len(x), rng) * np.sqrt(power / 10 ** (snr / 10))
        facts["snr_db"] = round(snr, 1)
    if plan.condition == "telephone":
        x = telephone_band(x)[: len(x)]
        facts["band"] = f"{TELEPHONE_BAND[0]:g}-{TELEPHONE_BAND[1]:g} Hz, {TELEPHONE_RATE} Hz mu-law"
    peak = np.abs(x).max()
    if peak > 0.9:
        x *= 0.9 / peak
    end = len(x) / SAMPLE_RATE
    reference = reference.crop(Segment(0, end))
    return x.astype(np.float32), reference, facts


# ---- the sets ------------------------------------------------------------------------------

def cache_root() -> Path:
    """``$DIAROPT_MEETINGS`` or ``_build/data`` in the repository."""
    return Path(os.environ.get("DIAROPT_MEETINGS", REPO_ROOT / "_build" / "data"))


def _key(plan: MeetingPlan) -> str:
    """Everything that defines a meeting's audio and labels: the plan, the recipe's constants and
    code version, the source files and the fitted data (by sha256), and the libraries' versions."""
    import lhotse
    import scipy
    import torchaudio

    fit = data_dir() / "ami-debug" / "debug.train.rttm"
    blob = json.dumps({
        "plan": asdict(plan), "version": VERSION,
        "constants": [SPEECH_FRACTION, PER_EXTRA_SPEAKER, SNR_DB, PINK_FROM_HZ, TELEPHONE_RATE, TELEPHONE_BAND],
        "libraries": [lhotse.__version__, np.__version__, scipy.__version__, torch.__version__,
                      torchaudio.__version__],
        "fitted on": hashlib.sha256(fit.read_bytes()).hexdigest(),
        "files": [manifest()[r]["sha256"] for s in plan.speakers for r in speakers_with_utterances()[s]]},
        sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def meeting(plan: MeetingPlan) -> Recording:
    """A planned meeting as a benchmark ``Recording`` (rendered once, then read from the cache)."""
    folder = cache_root() / f"{plan.uri}-{_key(plan)}"
    wav, rttm, meta = folder / "audio.wav", folder / "reference.rttm", folder / "meta.json"
    if not meta.exists():
        x, reference, facts = render(plan)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))  # renamed into place when complete
        try:
            sf.write(str(tmp / wav.name), x, SAMPLE_RATE, subtype="FLOAT")
            with open(tmp / rttm.name, "w") as f:
                reference.write_rttm(f)
            (tmp / meta.name).write_text(json.dumps(facts | {"plan": asdict(plan)}, indent=1))
            os.rename(tmp, folder)
        except OSError:
            if not meta.exists():  # unless another process finished the same meeting first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    audio, sr = sf.read(str(wav), dtype="float32")
    reference = _read_rttm(rttm).get(plan.uri, Annotation(uri=plan.uri))
    facts = json.loads(meta.read_text())
    uem = Timeline([Segment(0.0, len(audio) / sr)])
    return Recording(plan.uri, torch.from_numpy(audio).unsqueeze(0), reference, uem, "simulated", plan.split,
                     meta={k: v for k, v in facts.items() if k != "plan"} | {"speakers": list(plan.speakers)})


def evaluation_set(split: str, profile: str = "full", progress=None) -> list[Recording]:
    """A split's recordings: test = every real AMI test excerpt, pyannote's sample and the test
    meetings; tune = the AMI tune excerpts and the tune meetings; dev = meetings only.
    The smoke profile keeps one short meeting (and, for test, pyannote's sample)."""
    recs = _real_files(split, profile)
    plans = meeting_plans(split, profile)
    for k, plan in enumerate(plans):
        recs.append(meeting(plan))
        if progress is not None:
            progress(k + 1, len(plans))
    return recs


def evaluation_layouts(split: str, profile: str = "full") -> list:
    """``evaluation_set`` with each meeting as its ``Layout`` (no audio rendered): for tables."""
    return _real_files(split, profile) + [layout(plan) for plan in meeting_plans(split, profile)]


def _real_files(split: str, profile: str) -> list[Recording]:
    """The real recordings of a split: AMI's tune or test excerpts (full profile), pyannote's sample (test)."""
    recs = ami_recordings(split) if profile == "full" and split in ("tune", "test") else []
    return recs + ([pyannote_sample()] if split == "test" else [])


def split_table(sets: dict[str, list]):
    """One row per split: minutes, files, speakers, sources, sexes, overlap %, speakers per file,
    and the acoustic conditions (the baseline chapter's table)."""
    import pandas as pd

    from .data import _overlap

    sexes = speaker_sex()
    rows = []
    for split, recs in sets.items():
        voices = sorted({s for r in recs if r.source == "simulated" for s in r.meta.get("speakers", [])})
        speech = sum(r.reference.get_timeline().support().duration() for r in recs)
        counts = [len(r.reference.labels()) for r in recs]
        conditions = [r.meta.get("condition", r.source) for r in recs]
        rows.append({"split": split, "minutes": sum(r.duration for r in recs) / 60, "files": len(recs),
                     "real files": sum(r.source != "simulated" for r in recs),
                     "simulated voices": len(voices),
                     "women / men": f"{sum(sexes.get(v) == 'f' for v in voices)} / {sum(sexes.get(v) == 'm' for v in voices)}",
                     "LibriSpeech / speechocean762": f"{sum(v.startswith('librispeech') for v in voices)} / "
                                                     f"{sum(v.startswith('speechocean') for v in voices)}",
                     "overlap (% of speech)": 100 * sum(_overlap(r.reference) for r in recs) / max(speech, 1e-9),
                     "speakers per file": f"{min(counts)}-{max(counts)}",
                     "times each utterance is said": float(np.mean(
                         [r.meta["times each utterance is said"] for r in recs if r.source == "simulated"] or [np.nan])),
                     "conditions": ", ".join(f"{c} {conditions.count(c)}" for c in dict.fromkeys(conditions))})
    return pd.DataFrame(rows).set_index("split")
