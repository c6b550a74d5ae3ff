"""The realistic evaluation splits (``core.meetings``): who is in which split, what a plan holds,
and what the rendered audio and labels are."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from pyannote.core import Segment

from diaropt.core import meetings
from diaropt.core.constants import SAMPLE_RATE
from diaropt.core.data import adult_speakers, speech_regions


@pytest.fixture(autouse=True)
def meeting_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_MEETINGS", str(tmp_path / "meetings"))
    return tmp_path / "meetings"


def test_splits_are_disjoint_adult_and_balanced():
    splits = meetings.split_speakers()
    sets = [set(v) for v in splits.values()]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert set().union(*sets) == set(adult_speakers())
    sexes = meetings.speaker_sex()
    for corpus in ("librispeech", "speechocean762"):
        for sex in ("f", "m"):
            stratum = [s for s in sexes if s.startswith(corpus) and sexes[s] == sex]
            got = {split: sum(s in splits[split] for s in stratum) for split in meetings.SPLITS}
            # dealt test, tune, test, dev, tune, test: halves, thirds and sixths, up to one voice
            for split, share in (("test", 1 / 2), ("tune", 1 / 3), ("dev", 1 / 6)):
                assert abs(got[split] - share * len(stratum)) <= 1, (corpus, sex, got)


def test_plans_meet_the_targets_and_use_only_their_split():
    for split in meetings.SPLITS:
        plans = meetings.meeting_plans(split)
        assert plans == meetings.meeting_plans(split)  # seeded
        assert sum(p.minutes for p in plans) >= meetings.TARGET_MINUTES["full"][split]
        voices = set(meetings.split_speakers()[split])
        for p in plans:
            assert set(p.speakers) <= voices and len(set(p.speakers)) == len(p.speakers)
            assert 2 <= len(p.speakers) <= 6 and meetings.MINUTES[0] <= p.minutes <= meetings.MINUTES[1]
            assert abs(sum(p.shares) - 1) < 1e-3 and min(p.shares) >= 0.5 / len(p.speakers) - 1e-3
            assert p.condition != "telephone" or len(p.speakers) == 2
        assert {p.condition for p in plans} == set(meetings.CONDITIONS)
        counts = {len(p.speakers) for p in plans}  # the counts cycle: every one in test, 2 to 5 at least elsewhere
        assert counts == set(meetings.SPEAKER_COUNTS) if split == "test" else {2, 3, 4, 5} <= counts
        assert len({p.uri for p in plans}) == len(plans)


def test_a_clean_meeting_has_exact_labels_and_is_reproducible(monkeypatch):
    plan = meetings.meeting_plans("dev", "smoke")[0]
    assert plan.condition == "clean"
    x, reference, facts = meetings.render(plan)
    again, reference2, _ = meetings.render(plan)
    assert np.array_equal(x, again) and reference == reference2
    assert set(reference.labels()) == set(plan.speakers)
    # every labelled second holds speech, and the detector finds no speech outside the labels
    speech = reference.get_timeline().support()
    found = speech_regions(x)
    inside = sum((Segment(s, e) & seg).duration for s, e in found for seg in speech if Segment(s, e).intersects(seg))
    outside = sum(e - s for s, e in found) - inside
    assert outside < 0.05 * speech.duration()
    assert inside > 0.9 * speech.duration()
    assert speech.duration() > 0.4 * len(x) / SAMPLE_RATE


def test_meetings_are_cached_by_plan(meeting_cache, monkeypatch):
    plan = meetings.meeting_plans("tune", "smoke")[0]
    first = meetings.meeting(plan)
    monkeypatch.setattr(meetings, "render", lambda plan: (_ for _ in ()).throw(AssertionError("rendered twice")))
    second = meetings.meeting(plan)
    assert np.array_equal(first.waveform.numpy(), second.waveform.numpy())
    assert first.reference == second.reference and first.split == "tune"


def test_telephone_band_removes_what_a_phone_line_cannot_carry():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4 * SAMPLE_RATE)
    y = meetings.telephone_band(x)
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SAMPLE_RATE)
    inside = spectrum[(f > 500) & (f < 3000)].mean()
    assert spectrum[f > 4200].mean() < 1e-3 * inside
    assert spectrum[f < 100].mean() < 1e-2 * inside


def test_telephone_copy_pairs_with_its_original():
    import torch
    from pyannote.core import Annotation, Segment, Timeline

    from diaropt.core.data import Recording

    rng = np.random.default_rng(1)
    ref = Annotation(uri="call")
    ref[Segment(0, 2)] = "A"
    rec = Recording("call", torch.from_numpy(rng.standard_normal((1, 3 * SAMPLE_RATE)).astype(np.float32)), ref,
                    Timeline([Segment(0, 3)]), "simulated", "test", {"condition": "clean"})
    copy = meetings.telephone_copy(rec)
    assert (copy.uri, copy.reference, copy.uem, copy.waveform.shape) == (rec.uri, rec.reference, rec.uem, rec.waveform.shape)
    assert copy.meta["condition"] == "clean, through a phone line" and rec.meta["condition"] == "clean"
    assert copy.waveform.dtype == torch.float32 and copy.waveform.abs().max() <= 0.9 + 1e-6
    spectrum = np.abs(np.fft.rfft(copy.waveform[0].numpy().astype(np.float64))) ** 2
    f = np.fft.rfftfreq(copy.waveform.shape[-1], 1 / SAMPLE_RATE)
    assert spectrum[f > 4200].mean() < 1e-3 * spectrum[(f > 500) & (f < 3000)].mean()  # band-limited


def test_layout_is_the_rendered_meeting_without_audio():
    plan = dataclasses.replace(meetings.meeting_plans("test", "smoke")[0], condition="reverberant+noisy")
    x, reference, facts = meetings.render(plan)
    lay = meetings.layout(plan)
    assert lay.reference == reference and abs(lay.duration - len(x) / SAMPLE_RATE) < 1e-3
    assert lay.meta["times each utterance is said"] == facts["times each utterance is said"]


def test_split_table_describes_each_split():
    sets = {s: meetings.evaluation_set(s, "smoke") for s in meetings.SPLITS}
    table = meetings.split_table(sets)
    layouts = meetings.split_table({s: meetings.evaluation_layouts(s, "smoke") for s in meetings.SPLITS})
    pd.testing.assert_frame_equal(table, layouts)  # the table needs no audio
    assert list(table.index) == list(meetings.SPLITS)
    assert table.loc["test", "real files"] == 1  # pyannote's sample in the smoke profile
    assert (table["files"] >= 1).all() and (table["minutes"] > 0).all()


def test_reverberant_audio_does_not_depend_on_what_ran_before():
    plan = dataclasses.replace(meetings.meeting_plans("dev", "smoke")[0], condition="reverberant")
    first, reference, facts = meetings.render(plan)
    torch.rand(100)  # lhotse's room impulse generator draws from torch's global generator
    np.random.rand(10)
    state = torch.random.get_rng_state()
    again, _, _ = meetings.render(plan)
    assert np.array_equal(first, again)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is left as it was
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)  # and the audio does not depend on torch's threads
    try:
        assert np.array_equal(first, meetings.render(plan)[0])
    finally:
        torch.set_num_threads(threads)
    clean, clean_reference, _ = meetings.render(dataclasses.replace(plan, condition="clean"))
    assert reference == clean_reference and len(first) == len(clean)  # same turns, same length
    assert not np.allclose(first, clean, atol=1e-3)  # and the room is really applied


def test_noise_is_at_the_stated_snr_and_audible():
    plan = dataclasses.replace(meetings.meeting_plans("dev", "smoke")[0], condition="noisy")
    noisy, reference, facts = meetings.render(plan)
    clean, _, _ = meetings.render(dataclasses.replace(plan, condition="clean"))
    gain = float(noisy @ clean / (clean @ clean))  # the peak normalisation may scale the mix
    noise = noisy - gain * clean
    mask = np.zeros(len(clean), bool)
    for seg in reference.get_timeline().support():
        mask[int(seg.start * SAMPLE_RATE): int(seg.end * SAMPLE_RATE)] = True
    snr = 10 * np.log10(np.mean((gain * clean[mask]) ** 2) / np.mean(noise ** 2))
    assert meetings.SNR_DB[0] <= facts["snr_db"] <= meetings.SNR_DB[1]
    assert abs(snr - facts["snr_db"]) < 0.5
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(len(noise), 1 / SAMPLE_RATE)
    assert power[f < 20].sum() < 0.1 * power.sum()  # little sub-audible drift posing as noise


def test_cli_writes_the_splits(tmp_path, capsys):
    from diaropt import cli

    assert cli.main(["splits", "--split", "dev", "--smoke", "--out", str(tmp_path / "out")]) == 0
    files = sorted(p.name for p in (tmp_path / "out" / "dev").iterdir())
    plan = meetings.meeting_plans("dev", "smoke")[0]
    assert files == [f"{plan.uri}.rttm", f"{plan.uri}.wav"]
    assert "dev" in capsys.readouterr().out
