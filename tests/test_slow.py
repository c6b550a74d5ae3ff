"""Real models over real speech (tens of seconds each)."""
import json
import subprocess
import sys

import pytest

from diaropt.core import data, models
from diaropt.measure.verification import verification_eer

pytestmark = pytest.mark.slow


def test_campplus_verification_eer_is_low(provisioned):
    speakers = [s for s in data.speakers_with_utterances() if s.startswith("librispeech")]
    speakers += [s for s in data.speakers_with_utterances() if s.startswith("speechocean")][:6]
    res = verification_eer(models.load_campplus(), speakers, per_speaker=6)
    assert res["target_trials"] > 200
    assert res["eer"] < 0.05, res


def test_cli_benchmark_smoke_and_compare(provisioned, tmp_path):
    """The command's plumbing (benchmark -> JSON -> compare), on the fast variant: the reference
    pipeline itself is tested in test_fusion (test_shared_trunk_equals_reference_...), and benchmarked by the book."""
    out = tmp_path / "opt.json"
    cmd = [sys.executable, "-m", "diaropt", "benchmark", "--variant", "optimized", "--smoke", "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = json.loads(out.read_text())
    assert res["profile"] == "smoke" and res["totals"]["rtfx"] > 0
    assert res["models"]["segmentation"] == "pyannote/segmentation-3.0"
    assert res["environment"]["versions"]["pyannote.audio"] == "4.0.7"
    cmp = subprocess.run([sys.executable, "-m", "diaropt", "compare", str(out), str(out)],
                         check=True, capture_output=True, text=True).stdout
    assert "DER strict" in cmp and "1.00x" in cmp


def test_cli_errors_are_clean(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    proc = subprocess.run([sys.executable, "-m", "diaropt", "diarize", str(bad), "--output", str(tmp_path / "o.rttm")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot decode" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_diarizes_a_user_file_with_the_optimized_variant(provisioned, tmp_path):
    from diaropt.core.data import pyannote_sample, write_recording

    wav, _ = write_recording(pyannote_sample(), tmp_path)
    out = tmp_path / "out.rttm"
    proc = subprocess.run([sys.executable, "-m", "diaropt", "diarize", str(wav), "--variant", "optimized",
                           "--output", str(out)], capture_output=True, text=True, check=True)
    lines = [line.split() for line in out.read_text().splitlines()]
    assert lines and all(parts[0] == "SPEAKER" for parts in lines)
    assert len({parts[7] for parts in lines}) == 2
    assert "2 speakers" in proc.stdout


def test_cli_benchmarks_the_streaming_variant_with_params(provisioned, tmp_path, monkeypatch, capsys):
    """The command's --param options reach the streaming variant and its result (in this process,
    on pyannote's sample alone: the plumbing, not the smoke set, is under test)."""
    from diaropt import cli
    from diaropt.core.config import online_params
    from diaropt.core.data import pyannote_sample

    monkeypatch.setattr("diaropt.measure.benchmark.benchmark_set", lambda split, profile: [pyannote_sample()])
    out = tmp_path / "stream.json"
    assert cli.main(["benchmark", "--variant", "streaming", "--smoke", "--param", "step=2", "--param", "latency=4",
                     "--output", str(out)]) == 0

    res = json.loads(out.read_text())
    frozen = online_params("campplus")["threshold"]
    assert res["variant"] == "streaming" and res["models"]["online"] == {"step": 2.0, "latency": 4.0, "threshold": frozen}
    assert 0 <= res["totals"]["der_strict"] < 0.5
