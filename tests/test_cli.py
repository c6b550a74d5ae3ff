"""``python -m diaropt`` refuses misuse early: one ``error: ...`` line on stderr, exit status 2, no
traceback, and no model loaded nor audio read first.

The commands run in-process (``diaropt.cli.main``). The ``no_work`` fixture replaces everything
that does work (building a variant, reading audio, benchmarking, comparing) by a function that
fails the test, so a check that is removed or moved after the work makes its test fail."""
import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment

from diaropt import cli
from diaropt.core.data import Recording
from diaropt.core.errors import OptionError
from diaropt.pipelines import files, options
from diaropt.pipelines.reference import run_pyannote, with_speaker_counts
from diaropt.pipelines.registry import Variant

SR = 16000
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _run(argv, capsys):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _refused(argv, capsys, *fragments) -> str:
    rc, out, err = _run(argv, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2, (rc, err)
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _tone(path, seconds=2.0, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)
    sf.write(str(path), x.astype(np.float32), sr)
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Building a variant, reading audio, benchmarking or comparing fails the test."""
    def work(*args, **kwargs):
        raise AssertionError("work started before the command's checks")

    for target in ("diaropt.pipelines.registry.get_variant", "diaropt.core.audio.load_audio",
                   "diaropt.measure.benchmark.run_benchmark", "diaropt.measure.benchmark.compare_rows"):
        monkeypatch.setattr(target, work)


@pytest.fixture
def wav(tmp_path):
    return _tone(tmp_path / "in.wav")


# ---- diarize: paths ---------------------------------------------------------------------------

def test_diarize_refuses_a_missing_input(tmp_path, capsys, no_work):
    _refused(["diarize", tmp_path / "missing.wav", "--output", tmp_path / "o.rttm"], capsys, "missing.wav", "no such file")


def test_diarize_refuses_a_directory_without_audio(tmp_path, capsys, no_work):
    (tmp_path / "notes.txt").write_text("x")
    _refused(["diarize", tmp_path, "--output", tmp_path / "out"], capsys, "no audio files")


def test_diarize_refuses_an_output_in_a_missing_directory(wav, tmp_path, capsys, no_work):
    _refused(["diarize", wav, "--output", tmp_path / "nowhere" / "o.rttm"], capsys, "nowhere", "does not exist")


def test_diarize_refuses_several_inputs_into_one_file(wav, tmp_path, capsys, no_work):
    other = _tone(tmp_path / "other.wav")
    (tmp_path / "one.rttm").write_text("old\n")
    _refused(["diarize", wav, other, "--output", tmp_path / "one.rttm"], capsys, "need an output directory")
    assert (tmp_path / "one.rttm").read_text() == "old\n"


def test_diarize_refuses_two_inputs_that_would_write_the_same_rttm(tmp_path, capsys, no_work):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _tone(tmp_path / "a" / "call.wav"), _tone(tmp_path / "b" / "call.flac")
    line = _refused(["diarize", first, second, "--output", tmp_path / "out"], capsys, "would both write")
    assert "call.rttm" in line and not (tmp_path / "out").exists()


def test_diarize_refuses_an_undecodable_file_among_several_before_any_work(wav, tmp_path, capsys, no_work):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt nonsense")
    _refused(["diarize", wav, bad, "--output", tmp_path / "out"], capsys, "bad.wav", "cannot decode")


def test_diarize_refuses_to_overwrite_its_input(wav, tmp_path, capsys, no_work):
    _refused(["diarize", wav, "--output", wav], capsys, "is the input file")
    (tmp_path / "link.rttm").symlink_to(wav)
    _refused(["diarize", wav, "--output", tmp_path / "link.rttm"], capsys, "is the input file")
    assert sf.info(str(wav)).frames == 2 * SR


def test_diarize_refuses_an_output_under_a_file(wav, tmp_path, capsys, no_work):
    """Detectable for every user, root included."""
    (tmp_path / "notes.txt").write_text("x")
    _refused(["diarize", wav, "--output", tmp_path / "notes.txt" / "o.rttm"], capsys, "is not a directory")


def test_diarize_refuses_an_output_where_no_file_can_be_created(wav, capsys, no_work):
    """/proc accepts no new file, root included (a chmod-ed folder does not stop root)."""
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    _refused(["diarize", wav, "--output", "/proc/o.rttm"], capsys, "cannot create files")


@pytest.mark.skipif(AS_ROOT, reason="running as root: permission bits do not stop root from writing")
def test_diarize_refuses_a_read_only_directory(wav, tmp_path, capsys, no_work):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        _refused(["diarize", wav, "--output", folder / "o.rttm"], capsys, "cannot create files")
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(AS_ROOT, reason="running as root: permission bits do not stop root from writing")
def test_diarize_refuses_a_read_only_existing_output(wav, tmp_path, capsys, no_work):
    out = tmp_path / "o.rttm"
    out.write_text("old\n")
    out.chmod(0o444)
    _refused(["diarize", wav, "--output", out], capsys, "not writable")


def test_a_failed_run_leaves_an_existing_output_as_it_was(tmp_path, capsys, monkeypatch):
    """The output passes its checks, then the audio cannot be decoded: the old RTTM is intact."""
    monkeypatch.setattr("diaropt.pipelines.registry.get_variant",
                        lambda *a, **k: pytest.fail("a variant was built for undecodable audio"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "o.rttm"
    out.write_text("SPEAKER old 1 0.000 1.000 <NA> <NA> A <NA> <NA>\n")
    _refused(["diarize", bad, "--output", out], capsys, "cannot decode")
    assert out.read_text() == "SPEAKER old 1 0.000 1.000 <NA> <NA> A <NA> <NA>\n"
    _refused(["diarize", bad, "--output", out, "--variant", "nope"], capsys, "unknown variant")
    assert out.read_text().startswith("SPEAKER old")


# ---- diarize: a run with a stand-in pipeline (no model) -----------------------------------------

class FakePipeline:
    """Stands in for pyannote's SpeakerDiarization: records its call, returns fixed turns, one of
    them past the end of the audio."""

    def __init__(self):
        self.kwargs = None

    def __call__(self, file, hook=None, **kwargs):
        self.kwargs = kwargs
        for done in range(5):  # progress as pyannote's segmentation inference reports it
            hook("segmentation", None, total=4, completed=done)
        hook("segmentation", "the segmentation artifact")
        duration = file["waveform"].shape[-1] / file["sample_rate"]
        hyp = Annotation(uri=file["uri"])
        hyp[Segment(0.0, duration / 2)] = "SPEAKER_00"
        hyp[Segment(duration / 2, duration + 0.7)] = "SPEAKER_01"
        return hyp


@pytest.fixture
def fake_pipeline(monkeypatch):
    pipe = FakePipeline()
    built = []

    def get_variant(name, **kwargs):
        built.append((name, kwargs))
        return Variant(name, "stand-in", lambda rec: run_pyannote(pipe, rec), pipeline=pipe)

    monkeypatch.setattr("diaropt.pipelines.registry.get_variant", get_variant)
    pipe.built = built
    return pipe


def test_diarize_takes_paths_with_spaces_and_stereo_at_any_rate(tmp_path, capsys, fake_pipeline):
    folder = tmp_path / "my recordings"
    folder.mkdir()
    src = _tone(folder / "team call 1.wav", seconds=3.0, sr=8000, channels=2)
    out = folder / "team call 1.rttm"
    rc, stdout, err = _run(["diarize", src, "--output", out], capsys)
    assert rc == 0, err
    assert "resampled 8000 Hz -> 16000 Hz" in err and "downmixed 2 channels" in err
    lines = [line.split() for line in out.read_text().splitlines()]
    assert [parts[1] for parts in lines] == ["team_call_1", "team_call_1"]  # RTTM ids cannot hold spaces
    assert max(float(p[3]) + float(p[4]) for p in lines) == pytest.approx(3.0, abs=1e-3)  # clipped to the audio
    assert "2 speakers" in stdout
    assert fake_pipeline.kwargs == {}  # no speaker counts given: pyannote is called exactly as before


def test_diarize_reports_progress_on_stderr_unless_quiet(wav, tmp_path, capsys, fake_pipeline):
    rc, stdout, err = _run(["diarize", wav, "--output", tmp_path / "a.rttm"], capsys)
    assert rc == 0, err
    assert "[in.wav] segmentation: 100% (4/4)" in err and "segmentation" not in stdout
    rc, stdout, err = _run(["diarize", wav, "--output", tmp_path / "b.rttm", "--quiet"], capsys)
    assert rc == 0, err
    assert "segmentation" not in err and "2 speakers" in stdout


def test_diarize_downmix_flag_is_harmless_and_can_be_turned_off(tmp_path, capsys, fake_pipeline):
    src = _tone(tmp_path / "stereo.wav", channels=2)
    rc, _, err = _run(["diarize", src, "--output", tmp_path / "a.rttm", "--downmix"], capsys)
    assert rc == 0, err
    _refused(["diarize", src, "--output", tmp_path / "b.rttm", "--no-downmix"], capsys, "2 channels")


def test_diarize_writes_one_rttm_per_file_of_a_directory_with_models_built_once(tmp_path, capsys, fake_pipeline):
    folder = tmp_path / "meetings"
    folder.mkdir()
    for name in ("b.wav", "a.flac", "c.ogg"):
        _tone(folder / name, seconds=2.5)
    (folder / "readme.txt").write_text("not audio")
    rc, stdout, err = _run(["diarize", folder, "--output", tmp_path / "rttm", "--quiet"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "rttm").iterdir()) == ["a.rttm", "b.rttm", "c.rttm"]
    assert (tmp_path / "rttm" / "c.rttm").read_text().split()[1] == "c"
    assert [line.split(" -> ")[1] for line in stdout.splitlines()] == [str(tmp_path / "rttm" / f"{x}.rttm") for x in "abc"]
    assert len(fake_pipeline.built) == 1  # one pipeline for every file


def test_diarize_one_file_into_a_directory(wav, tmp_path, capsys, fake_pipeline):
    out = tmp_path / "out"
    out.mkdir()
    rc, _, err = _run(["diarize", wav, "--output", out], capsys)
    assert rc == 0, err
    assert (out / "in.rttm").read_text().startswith("SPEAKER in 1 ")


def test_a_file_that_fails_does_not_stop_the_others(tmp_path, capsys, fake_pipeline):
    good = _tone(tmp_path / "good.wav")
    short = _tone(tmp_path / "short.wav", seconds=0.05)  # the header is fine; the samples are too few
    rc, stdout, err = _run(["diarize", short, good, "--output", tmp_path / "out", "--quiet"], capsys)
    assert rc == 2
    assert (tmp_path / "out" / "good.rttm").exists() and not (tmp_path / "out" / "short.rttm").exists()
    assert "short.wav" in err and "1 of 2 files failed" in err and "Traceback" not in err
    assert "good.rttm" in stdout


def test_diarize_runs_on_a_dask_cluster(tmp_path, capsys, fake_pipeline):
    from dask.distributed import LocalCluster

    srcs = [_tone(tmp_path / f"f{i}.wav") for i in range(3)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        rc, stdout, err = _run(["diarize", *srcs, "--output", tmp_path / "out", "--quiet",
                                "--dask-scheduler", cluster.scheduler_address], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f0.rttm", "f1.rttm", "f2.rttm"]
    assert len(stdout.splitlines()) == 3


def test_diarize_says_when_the_dask_scheduler_cannot_be_reached(wav, tmp_path, capsys, no_work, monkeypatch):
    monkeypatch.setattr(files, "DASK_CONNECT_TIMEOUT", 1.0)
    _refused(["diarize", wav, "--output", tmp_path / "o.rttm", "--dask-scheduler", "tcp://127.0.0.1:9"], capsys,
             "cannot connect")


def test_diarize_refuses_a_truncated_wav_before_any_work(tmp_path, capsys, no_work):
    full = _tone(tmp_path / "full.wav", seconds=4.0)
    cut = tmp_path / "cut.wav"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    _refused(["diarize", cut, "--output", tmp_path / "o.rttm"], capsys, "cut.wav", "truncated", "4.0 s", "2.0 s")


def test_diarize_warns_about_very_quiet_audio(tmp_path, capsys, fake_pipeline):
    src = tmp_path / "quiet.wav"
    t = np.arange(3 * SR) / SR
    sf.write(str(src), (10 ** (-81 / 20) * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, subtype="FLOAT")
    rc, _, err = _run(["diarize", src, "--output", tmp_path / "o.rttm", "--quiet"], capsys)
    assert rc == 0, err
    assert f"warning: {src}: very quiet (peak -81 dBFS)" in err


def test_diarize_passes_speaker_counts_to_pyannote(wav, tmp_path, capsys, fake_pipeline):
    rc, _, err = _run(["diarize", wav, "--output", tmp_path / "o.rttm", "--variant", "optimized",
                       "--min-speakers", "2", "--max-speakers", "4"], capsys)
    assert rc == 0, err
    assert fake_pipeline.kwargs == {"min_speakers": 2, "max_speakers": 4}
    rc, _, err = _run(["diarize", wav, "--output", tmp_path / "o.rttm", "--num-speakers", "3"], capsys)
    assert rc == 0, err
    assert fake_pipeline.kwargs == {"num_speakers": 3}


def test_diarize_hands_typed_params_to_the_variant(wav, tmp_path, capsys, fake_pipeline):
    rc, _, err = _run(["diarize", wav, "--output", tmp_path / "o.rttm", "--variant", "optimized",
                       "--param", "segmentation_step=0.5", "--param", "runtime=torch", "--param", "threads=2"], capsys)
    assert rc == 0, err
    name, kwargs = fake_pipeline.built[-1]
    assert name == "optimized"
    assert {k: kwargs[k] for k in ("segmentation_step", "runtime", "threads")} == {
        "segmentation_step": 0.5, "runtime": "torch", "threads": 2}


def test_clip_to_audio_ends_every_turn_within_the_audio():
    hyp = Annotation(uri="u")
    hyp[Segment(0.0, 5.0)] = "A"
    hyp[Segment(4.0, 12.0)] = "B"
    hyp[Segment(13.0, 15.0)] = "C"
    clipped = files.clip_to_audio(hyp, 10.0)
    turns = [(s.start, s.end, label) for s, _, label in clipped.itertracks(yield_label=True)]
    assert turns == [(0.0, 5.0, "A"), (4.0, 10.0, "B")]
    assert clipped.uri == "u"


def test_rttm_uri_has_no_spaces():
    assert files.rttm_uri("/a b/my  meeting\t2.wav") == "my_meeting_2"
    assert files.rttm_uri("plain.flac") == "plain"


# ---- variants and their options ---------------------------------------------------------------

@pytest.mark.parametrize("command", ["diarize", "benchmark"])
def test_an_unknown_variant_lists_the_known_ones(command, wav, tmp_path, capsys, no_work):
    argv = [command, *([wav] if command == "diarize" else []), "--output", tmp_path / "o.out", "--variant", "fastest"]
    line = _refused(argv, capsys, "unknown variant 'fastest'", "optimized", "reference", "streaming")
    assert line.startswith("error: unknown variant")  # not KeyError's quoted repr


def test_an_unknown_variant_is_named_before_its_other_options_are_judged(wav, tmp_path, capsys, no_work):
    _refused(["diarize", wav, "--output", tmp_path / "o.rttm", "--variant", "fastest", "--num-speakers", "2",
              "--param", "step=1"], capsys, "unknown variant 'fastest'")


@pytest.mark.parametrize("params, fragments", [
    (["segmentaton_step=0.5"], ["no option 'segmentaton_step'", "did you mean 'segmentation_step'",
                                "accepted: linkage, runtime, segmentation_step, threads"]),
    (["step=1"], ["no option 'step'", "accepted:"]),
    (["segmentation_step=0"], ["segmentation_step=0", "(0, 1]"]),
    (["segmentation_step=-0.25"], ["segmentation_step=-0.25", "(0, 1]"]),
    (["segmentation_step=2.5"], ["segmentation_step=2.5", "fraction of the 10 s window"]),
    (["segmentation_step=nan"], ["segmentation_step=nan"]),
    (["segmentation_step=fast"], ["segmentation_step=fast"]),
    (["runtime=tensorrt"], ["onnxruntime or torch"]),
    (["threads=0"], ["threads=0", "positive integer"]),
    (["threads=1.5"], ["threads=1.5"]),
    (["linkage=ward"], ["linkage=ward", "vector", "scipy"]),
    (["segmentation_step"], ["KEY=VALUE"]),
    (["runtime=torch", "runtime=onnxruntime"], ["given twice"]),
])
def test_optimized_params_are_checked(params, fragments, wav, tmp_path, capsys, no_work):
    pairs = [x for p in params for x in ("--param", p)]
    _refused(["diarize", wav, "--output", tmp_path / "o.rttm", "--variant", "optimized", *pairs], capsys, *fragments)


@pytest.mark.parametrize("params, fragments", [
    (["step=0"], ["step=0", "(0, 10]"]),
    (["step=-1"], ["step=-1"]),
    (["step=12"], ["step=12"]),
    (["latency=0"], ["latency=0"]),
    (["threshold=2"], ["threshold=2", "(0, 2)"]),
    (["step=6"], ["latency must be between step", "configs/reference.yaml"]),  # the frozen latency is 5 s
    (["step=3", "latency=2"], ["latency must be between step"]),
    (["integrated=x"], ["no option 'integrated'", "accepted: latency, step, threshold"]),
])
def test_streaming_params_are_checked(params, fragments, tmp_path, capsys, no_work):
    pairs = [x for p in params for x in ("--param", p)]
    _refused(["benchmark", "--output", tmp_path / "s.json", "--variant", "streaming", "--embedding", "campplus", *pairs],
             capsys, *fragments)


@pytest.mark.parametrize("variant", ["reference", "shared-trunk", "shared-trunk-skip"])
def test_variants_without_options_refuse_any_param(variant, tmp_path, capsys, no_work):
    _refused(["benchmark", "--output", tmp_path / "r.json", "--variant", variant, "--param", "segmentation_step=0.5"],
             capsys, f"variant {variant!r} takes no --param options")


def test_the_accepted_keys_come_from_the_factories():
    assert options.accepted_keys("optimized") == ["linkage", "runtime", "segmentation_step", "threads"]
    assert options.accepted_keys("streaming") == ["latency", "step", "threshold"]
    assert options.accepted_keys("reference") == []


def test_benchmark_refuses_an_output_that_is_a_directory(tmp_path, capsys, no_work):
    _refused(["benchmark", "--output", tmp_path, "--smoke"], capsys, "is a directory")


def test_benchmark_refuses_an_output_under_a_file(tmp_path, capsys, no_work):
    (tmp_path / "f").write_text("x")
    _refused(["benchmark", "--output", tmp_path / "f" / "sub" / "r.json", "--smoke"], capsys, "is not a directory")


# ---- speaker counts ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags, fragments", [
    (["--num-speakers", "0"], ["--num-speakers", "positive integer"]),
    (["--min-speakers", "-1"], ["--min-speakers", "positive integer"]),
    (["--max-speakers", "two"], ["--max-speakers", "positive integer"]),
    (["--num-speakers", "2.5"], ["--num-speakers"]),
    (["--min-speakers", "3", "--max-speakers", "2"], ["--min-speakers 3", "--max-speakers 2"]),
    (["--num-speakers", "2", "--min-speakers", "3"], ["--num-speakers 2", "--min-speakers 3"]),
    (["--num-speakers", "5", "--max-speakers", "4"], ["--num-speakers 5", "--max-speakers 4"]),
])
@pytest.mark.parametrize("command", ["diarize", "benchmark"])
def test_speaker_counts_are_checked(command, flags, fragments, wav, tmp_path, capsys, no_work):
    argv = [command, *([wav] if command == "diarize" else []), "--output", tmp_path / "o.out", *flags]
    _refused(argv, capsys, *fragments)


@pytest.mark.parametrize("command", ["diarize", "benchmark"])
def test_streaming_cannot_take_speaker_counts(command, wav, tmp_path, capsys, no_work):
    argv = [command, *([wav] if command == "diarize" else []), "--output", tmp_path / "o.out",
            "--variant", "streaming", "--max-speakers", "3"]
    _refused(argv, capsys, "'streaming' cannot honour --max-speakers")


def test_consistent_speaker_counts_are_kept_as_given():
    assert options.speaker_counts() == {}
    assert options.speaker_counts(3, 2, 4) == {"num_speakers": 3, "min_speakers": 2, "max_speakers": 4}
    assert options.speaker_counts(None, 2, None) == {"min_speakers": 2}


def test_with_speaker_counts_wraps_only_when_asked():
    pipe = FakePipeline()
    v = Variant("x", "d", lambda rec: run_pyannote(pipe, rec), pipeline=pipe)
    assert with_speaker_counts(v, {}) is v
    rec = Recording("r", np.zeros((1, SR), np.float32), None, None, "user", "")
    with_speaker_counts(v, {"num_speakers": 4}).run(rec)
    assert pipe.kwargs == {"num_speakers": 4}
    with pytest.raises(OptionError, match="cannot honour"):
        with_speaker_counts(Variant("online", "d", lambda rec: None), {"max_speakers": 2})


def test_benchmark_passes_speaker_counts(tmp_path, capsys, fake_pipeline, monkeypatch):
    seen = {}

    def run_benchmark(variant, **kwargs):
        rec = Recording("r", np.zeros((1, SR), np.float32), None, None, "user", "")
        variant.run(rec)
        seen["description"] = variant.description
        return {"variant": variant.name, "models": {}, "totals": {"files": 1, "audio_seconds": 1.0, "der_strict": 0.1,
                                                                   "der_fluidaudio": 0.1, "rtfx": 10.0}}

    monkeypatch.setattr("diaropt.measure.benchmark.run_benchmark", run_benchmark)
    rc, out, err = _run(["benchmark", "--output", tmp_path / "new" / "r.json", "--num-speakers", "2"], capsys)
    assert rc == 0, err
    assert fake_pipeline.kwargs == {"num_speakers": 2} and "num_speakers=2" in seen["description"]
    assert json.loads((tmp_path / "new" / "r.json").read_text())["variant"] == "reference"


# ---- compare ----------------------------------------------------------------------------------

def _result(rtfx=10.0, **totals):
    files = [{"uri": f"f{i}", "der_strict": 0.2, "der_fluidaudio": 0.1, "scored_strict": 30.0,
              "scored_fluidaudio": 30.0} for i in range(2)]
    t = {"der_strict": 0.2, "der_fluidaudio": 0.1, "missed_strict": 0.05, "false_strict": 0.05,
         "confusion_strict": 0.1, "rtfx": rtfx, "peak_rss_mib": 900.0, "audio_seconds": 43.0,
         "stage_seconds": {"segmentation": 1.0, "counting": 0.1, "embedding": 3.0, "clustering": 0.2, "total": 4.3}}
    return {"variant": "reference", "models": {"embedding": "campplus"}, "environment": {"cpu": "x"},
            "totals": t | totals, "files": files}


def _write(path, obj):
    path.write_text(json.dumps(obj, allow_nan=True))
    return path


def test_compare_prints_two_valid_results(tmp_path, capsys):
    a = _write(tmp_path / "a.json", _result(rtfx=10.0))
    b = _write(tmp_path / "b.json", _result(rtfx=20.0))
    rc, out, err = _run(["compare", a, b], capsys)
    assert rc == 0, err
    assert "RTFx" in out and "2.00x" in out


def test_compare_names_the_missing_file(tmp_path, capsys, no_work):
    a = _write(tmp_path / "a.json", _result())
    line = _refused(["compare", a, tmp_path / "gone.json"], capsys, "gone.json", "no such file")
    assert "a.json" not in line


def test_compare_names_the_file_that_is_not_json(tmp_path, capsys, no_work):
    a = _write(tmp_path / "a.json", _result())
    bad = tmp_path / "half.json"
    bad.write_text('{"variant": "reference", "tot')
    _refused(["compare", bad, a], capsys, "half.json", "not JSON", "line 1")
    binary = tmp_path / "audio.json"
    binary.write_bytes(b"\xff\xfe\x00RIFF")
    _refused(["compare", a, binary], capsys, "audio.json", "not JSON")


@pytest.mark.parametrize("broken, fragment", [
    (["not", "a", "dict"], "top level"),
    ({"variant": "x"}, "is a required property"),
    ("drop-totals.rtfx", "'rtfx' is a required property"),
    ("drop-files", "'files' is a required property"),
    ("empty-files", "files"),
    ("string-rtfx", "totals.rtfx"),
])
def test_compare_refuses_json_that_is_not_a_benchmark_result(broken, fragment, tmp_path, capsys, no_work):
    obj = _result()
    if broken == "drop-totals.rtfx":
        del obj["totals"]["rtfx"]
    elif broken == "drop-files":
        del obj["files"]
    elif broken == "empty-files":
        obj["files"] = []
    elif broken == "string-rtfx":
        obj["totals"]["rtfx"] = "fast"
    else:
        obj = broken
    a = _write(tmp_path / "a.json", _result())
    b = _write(tmp_path / "summary.json", obj)
    _refused(["compare", a, b], capsys, "summary.json", "not a benchmark result", fragment)


@pytest.mark.parametrize("field, value", [("rtfx", 0.0), ("rtfx", -3.0), ("rtfx", math.nan), ("rtfx", math.inf),
                                          ("peak_rss_mib", 0.0), ("der_strict", math.nan)])
def test_compare_refuses_impossible_values(field, value, tmp_path, capsys, no_work):
    a = _write(tmp_path / "a.json", _result())
    b = _write(tmp_path / "b.json", _result(**{field: value}))
    line = _refused(["compare", a, b], capsys, "b.json", "impossible value", f"totals.{field}")
    assert "nanx" not in line and "0.00x" not in line


# ---- a real run -------------------------------------------------------------------------------

@pytest.mark.slow
def test_num_speakers_is_honoured_by_the_optimized_variant(provisioned, tmp_path, capsys):
    """The sample has two speakers; asking for three proves the option reaches pyannote."""
    from diaropt.core.data import pyannote_sample, write_recording

    rec = pyannote_sample()
    src, _ = write_recording(rec, tmp_path)
    out = tmp_path / "out.rttm"
    rc, stdout, err = _run(["diarize", src, "--variant", "optimized", "--num-speakers", "3", "--output", out], capsys)
    assert rc == 0, err
    lines = [line.split() for line in out.read_text().splitlines()]
    assert len({parts[7] for parts in lines}) == 3
    assert "3 speakers" in stdout
    assert max(float(p[3]) + float(p[4]) for p in lines) <= rec.duration + 1e-3
    # pyannote's own hook calls reach the progress lines, through the trunk pipeline's embeddings too
    assert f"[{src.name}] segmentation: 100%" in err and f"[{src.name}] embeddings: 100%" in err


def test_diarize_says_when_it_clustered_telephone_band_audio(wav, tmp_path, capsys, fake_pipeline):
    fake_pipeline.band_decision = {"shares": {"low": 1e-4, "high": 2e-5}, "telephone": True,
                                   "clustering": {"threshold": 0.6, "min_cluster_size": 5}}
    rc, _, err = _run(["diarize", wav, "--output", tmp_path / "a.rttm"], capsys)
    assert rc == 0, err
    assert "telephone-band audio" in err and "threshold 0.6, minimum cluster size 5" in err
    fake_pipeline.band_decision = {"shares": {"low": 0.1, "high": 2e-2}, "telephone": False, "clustering": None}
    rc, _, err = _run(["diarize", wav, "--output", tmp_path / "b.rttm"], capsys)
    assert rc == 0 and "telephone" not in err
