import numpy as np
import pytest
from pyannote.core import Segment

from diaropt.core import data
from diaropt.core.data import ConversationRecipe, simulate_conversation, speech_regions

SR = 16000


def burst_utterance(bursts, total):
    """Synthetic utterance: noise bursts at exact (start, end) seconds, digital silence elsewhere."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(total * SR), np.float32)
    for s, e in bursts:
        x[int(s * SR): int(e * SR)] = 0.2 * rng.standard_normal(int(e * SR) - int(s * SR))
    return x


FAKE = {f"u{i}": burst_utterance([(0.2, 1.2), (1.8, 2.6)], 3.0) for i in range(12)}
SPEAKERS = {f"spk{k}": [f"u{i}" for i in range(k * 3, k * 3 + 3)] for k in range(4)}


def fake_conversation(**kw):
    recipe = ConversationRecipe(**({"n_speakers": 3, "duration": 20.0, "seed": 7, "gain_db": 0.0} | kw))
    return simulate_conversation(recipe, list(SPEAKERS), "fake", utterances=SPEAKERS, load=FAKE.__getitem__)


def test_speech_regions_find_the_bursts():
    regions = speech_regions(FAKE["u0"])
    assert len(regions) == 2
    for (s, e), (ts, te) in zip(regions, [(0.2, 1.2), (1.8, 2.6)]):
        assert abs(s - ts) <= 0.01 and abs(e - te) <= 0.01


def test_simulated_labels_are_exact():
    rec = fake_conversation(overlap_ratio=0.0, turn_seconds=(3.0, 3.0))
    x = rec.waveform[0].numpy()
    voiced = np.abs(x) > 0
    ref_mask = np.zeros_like(voiced)
    for seg in rec.reference.get_timeline():
        ref_mask[int(seg.start * SR): int(seg.end * SR)] = True
    # labels and placed speech agree up to one 10 ms frame at each region edge
    n_regions = len(rec.reference.get_timeline())
    assert np.sum(voiced != ref_mask) <= n_regions * 2 * 160
    assert set(rec.reference.labels()) <= set(SPEAKERS)
    assert len(rec.reference.labels()) == 3


def test_overlap_ratio_creates_overlap():
    no = fake_conversation(overlap_ratio=0.0, turn_seconds=(3.0, 3.0))
    yes = fake_conversation(overlap_ratio=1.0, turn_seconds=(3.0, 3.0), overlap_seconds=(1.0, 1.0))
    assert data._overlap(no.reference) == 0.0
    assert data._overlap(yes.reference) > 1.0


def test_simulator_is_deterministic_and_seeded():
    a, b, c = fake_conversation(), fake_conversation(), fake_conversation(seed=8)
    assert np.array_equal(a.waveform.numpy(), b.waveform.numpy())
    assert a.reference == b.reference
    assert not np.array_equal(a.waveform.numpy()[: 16000 * 5], c.waveform.numpy()[: 16000 * 5])


def test_recipe_validation():
    with pytest.raises(ValueError, match="n_speakers"):
        fake_conversation(n_speakers=6)


def test_speaker_halves_are_disjoint_and_cover_all():
    a, b = data.speaker_halves()
    assert not set(a) & set(b)
    assert set(a) | set(b) == set(data.speakers_with_utterances())


def test_real_benchmark_set_meets_recipe():
    test, tune = data.benchmark_set("test"), data.benchmark_set("tune")
    sim = [r for r in test + tune if r.source == "simulated"]
    assert sum(r.duration for r in sim) >= 20 * 60
    assert {r.uri for r in test if r.source == "ami"} == {"dev00", "dev01"}
    assert "sample" in {r.uri for r in test}
    spk_test = {s for r in test if r.source == "simulated" for s in r.meta["speakers"]}
    spk_tune = {s for r in tune if r.source == "simulated" for s in r.meta["speakers"]}
    assert not spk_test & spk_tune
    for r in sim:
        assert 2 <= len(r.reference.labels()) <= 5
        assert r.reference.get_timeline().extent() in Segment(0, r.duration)


def test_tampered_data_is_detected(tmp_path, monkeypatch):
    src = data.data_dir()
    (tmp_path / "ami-debug").mkdir()
    (tmp_path / "ami-debug" / "dev00.wav").write_bytes((src / "ami-debug" / "dev00.wav").read_bytes()[:-10])
    (tmp_path / "MANIFEST.tsv").write_text((src / "MANIFEST.tsv").read_text())
    monkeypatch.setenv("DIAROPT_DATA", str(tmp_path))
    data.manifest.cache_clear()
    data.verified_path.cache_clear()
    try:
        with pytest.raises(data.DataError, match="does not match"):
            data.verified_path("ami-debug/dev00.wav")
    finally:
        data.manifest.cache_clear()
        data.verified_path.cache_clear()


def test_missing_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAROPT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="DIAROPT_DATA"):
        data.data_dir()
