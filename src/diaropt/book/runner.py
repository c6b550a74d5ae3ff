"""Execute the book's notebooks with papermill and build it offline with Jupyter Book 1.x.

``python -m diaropt.book execute --profile full|smoke [--only SLUG] [--force]``
    Runs the notebooks of ``_toc.yml`` in order, headless, with the project's kernel, into a
    staged copy of the book (``_build/book-src``); a failing cell stops the run with a non-zero
    exit naming the notebook and the cell. Writes ``_build/results/status.json`` and the status
    page from it, with one row per notebook.

    Each executed copy gets a stamp beside it (``<notebook>.ipynb.stamp.json``): a sha256 of the
    notebook, every file of the ``diaropt`` package, ``configs/reference.yaml``, the pinned
    requirements, the data's ``MANIFEST.tsv``, the ``DIAROPT_*`` settings, the profile
    and the stamps of the chapters it reads (``DEPENDS``). A chapter whose executed copy carries
    the stamp its inputs give now is skipped ("up to date"); ``--force`` executes it anyway. A
    fresh clone has no stamps, so everything executes.

    ``--only SLUG`` (the notebook's stem without its ``NN_`` prefix, e.g. ``quantization``, or
    the whole stem, ``03_quantization``) executes that chapter and, first, the chapters it
    declares in ``DEPENDS``, each skipped when up to date.
``python -m diaropt.book build``
    ``jupyter-book build -W`` on the staged copy (notebooks are not re-executed), with MathJax
    served from the book itself; the HTML lands in ``_build/html``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..core.constants import REPO_ROOT

BUILD = REPO_ROOT / "_build"
STAGE = BUILD / "book-src"
KERNEL = "diaropt"
MATHJAX = Path("/usr/share/javascript/mathjax")

# What a stamp hashes besides the notebook itself (module-level so tests can point them elsewhere).
PACKAGE = Path(__file__).resolve().parents[1]  # src/diaropt
INPUT_FILES = (REPO_ROOT / "configs" / "reference.yaml", REPO_ROOT / "requirements.txt",
               REPO_ROOT / "requirements-nodeps.txt")

# The chapters whose saved results (``results_dir()/<slug>-summary-<profile>.json`` and the like)
# a chapter reads. Every chapter not listed reads nothing but the package, the data and the
# frozen configuration. ``--only`` executes these first; a chapter's stamp includes theirs.
DEPENDS: dict[str, tuple[str, ...]] = {
    # 01_fusion reuses the baseline's reference run and its harness run (``reference-<profile>``,
    # ``reference-harness-<profile>``) for its trunk table.
    "fusion": ("baseline",),
    # 05_streaming scores its offline comparison with the baseline's harness run (``reference-harness-<profile>``).
    "streaming": ("baseline",),
    # 90_optimized reads every summary of ``diaropt.book.claims.SUMMARY_FILES`` (the guide's table:
    # fusion, batching, quantization, pruning; its "other techniques" rows: streaming, caching,
    # hardware, parallel, ensembles) and ``diaropt.measure.ablation`` batching's and quantization's.
    # tests/test_book_runner.py checks that every chapter it names is declared here.
    # It also reads the baseline's reference and harness runs (``reference-<profile>``, ``reference-harness-<profile>``).
    "optimized": ("baseline", "fusion", "batching", "quantization", "pruning",
                  "streaming", "caching", "hardware", "parallel", "ensembles"),
}

UP_TO_DATE = "skipped (up to date)"


class UnknownChapter(ValueError):
    """``--only`` named no chapter of the table of contents."""


def toc_files(toc: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Every document of the table of contents, in reading order (without extension)."""
    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(node):
        for part in node.get("parts", []) + node.get("chapters", []) + node.get("sections", []):
            if "file" in part:
                files.append(part["file"])
            walk(part)

    walk(data)
    return files


def notebooks_in_order() -> list[Path]:
    return [REPO_ROOT / f"{f}.ipynb" for f in toc_files() if (REPO_ROOT / f"{f}.ipynb").exists()]


def slug(nb: Path) -> str:
    """``notebooks/03_quantization.ipynb`` -> ``quantization``."""
    return re.sub(r"^\d+_", "", nb.stem)


def _rel(nb: Path) -> str:
    return str(nb.relative_to(nb.parents[1]))


def find(notebooks: list[Path], name: str) -> Path:
    """The notebook a slug (``quantization``) or a whole stem (``03_quantization``) names."""
    for nb in notebooks:
        if name in (slug(nb), nb.stem, nb.name):
            return nb
    known = ", ".join(slug(nb) for nb in notebooks)
    raise UnknownChapter(f"unknown chapter {name!r}: known chapters are {known}")


def plan(notebooks: list[Path], only: list[str] | None = None,
         depends: dict[str, tuple[str, ...]] | None = None) -> list[Path]:
    """The notebooks to execute, in table-of-contents order: all of them, or those named by
    ``only`` together with everything they depend on (transitively)."""
    depends = DEPENDS if depends is None else depends
    order = {nb: i for i, nb in enumerate(notebooks)}
    for nb in notebooks:
        for dep in depends.get(slug(nb), ()):
            if order[find(notebooks, dep)] > order[nb]:
                raise ValueError(f"{_rel(nb)} depends on {dep!r}, which comes after it in _toc.yml")
    if not only:
        return list(notebooks)
    wanted: set[Path] = set()
    todo = [find(notebooks, name) for name in only]
    while todo:
        nb = todo.pop()
        if nb not in wanted:
            wanted.add(nb)
            todo += [find(notebooks, dep) for dep in depends.get(slug(nb), ())]
    return [nb for nb in notebooks if nb in wanted]


def _hash_file(h, path: Path, name: str) -> None:
    h.update(name.encode() + b"\0")
    h.update(path.read_bytes() if path.is_file() else b"<missing>")
    h.update(b"\0")


def manifest_file() -> Path:
    """The evaluation data's ``MANIFEST.tsv`` (``$DIAROPT_DATA``, as ``diaropt.core.data`` finds it)."""
    return Path(os.environ.get("DIAROPT_DATA", REPO_ROOT.parent / "shared" / "eval-data")) / "MANIFEST.tsv"


def inputs_digest() -> str:
    """sha256 of what every chapter shares: the package source, the frozen configuration and
    pinned requirements, the data manifest and the ``DIAROPT_*`` settings."""
    h = hashlib.sha256()
    for path in sorted(p for p in PACKAGE.rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"):
        _hash_file(h, path, f"package/{path.relative_to(PACKAGE).as_posix()}")
    for path in INPUT_FILES:
        _hash_file(h, path, f"input/{path.name}")
    _hash_file(h, manifest_file(), "data/MANIFEST.tsv")
    settings = {k: v for k, v in sorted(os.environ.items()) if k.startswith("DIAROPT_")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def stamp_path(out: Path) -> Path:
    """The stamp beside an executed copy: ``NN_slug.ipynb.stamp.json``."""
    return out.with_name(out.name + ".stamp.json")


def read_stamp(out: Path) -> dict | None:
    try:
        return json.loads(stamp_path(out).read_text())
    except (OSError, ValueError):
        return None


def stamp(nb: Path, profile: str, inputs: str, dependencies: dict[str, dict | None]) -> str:
    """sha256 of one chapter's inputs: the notebook, the shared inputs' digest, the profile and,
    for every chapter it reads, that chapter's recorded stamp and execution time (a dependency
    executed again, even from unchanged inputs, makes its dependants stale)."""
    h = hashlib.sha256()
    _hash_file(h, nb, "notebook")
    h.update(inputs.encode() + b"\0" + profile.encode() + b"\0")
    for name in sorted(dependencies):
        rec = dependencies[name] or {}
        h.update(f"{name}:{rec.get('stamp')}:{rec.get('executed')}\0".encode())
    return h.hexdigest()


def stage_sources(stage: Path = STAGE, notebooks: list[Path] | None = None) -> None:
    """Refresh the book's non-notebook sources in the staging tree.

    Executed notebooks and their stamps stay (that is what lets an up-to-date chapter be
    skipped); only executed copies of notebooks no longer in ``_toc.yml`` are removed."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO_ROOT / name, stage / name)
    if (stage / "book").exists():
        shutil.rmtree(stage / "book")
    shutil.copytree(REPO_ROOT / "book", stage / "book")
    staged = stage / "notebooks"
    staged.mkdir(exist_ok=True)
    keep = {nb.name for nb in (notebooks if notebooks is not None else notebooks_in_order())}
    for path in staged.glob("*.ipynb"):
        if path.name not in keep:
            path.unlink()
            stamp_path(path).unlink(missing_ok=True)


def execute(profile: str, notebooks: list[Path] | None = None, stage: Path | None = None,
            only: list[str] | None = None, force: bool = False,
            depends: dict[str, tuple[str, ...]] | None = None) -> int:
    """Execute notebooks (default: all of ``_toc.yml``; with ``only``, those chapters and what
    they depend on) into the staging tree, skipping up-to-date ones unless ``force``; 0 if all ran.

    Raises ``UnknownChapter`` when ``only`` names no notebook."""
    import papermill as pm

    depends = DEPENDS if depends is None else depends
    every = notebooks if notebooks is not None else notebooks_in_order()
    todo = plan(every, only, depends)
    if stage is None:
        stage_sources(STAGE, every)
        stage = STAGE
    inputs = inputs_digest()
    status = {"profile": profile, "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "only": list(only) if only else None, "notebooks": []}
    failed = None
    for nb in every:
        rel = _rel(nb)
        out = stage / rel
        deps = {d: read_stamp(stage / _rel(find(every, d))) for d in depends.get(slug(nb), ())}
        digest = stamp(nb, profile, inputs, deps)
        record = read_stamp(out)
        current = out.exists() and record is not None and record.get("stamp") == digest
        row = {"notebook": rel, "seconds": (record or {}).get("seconds"),
               "executed": (record or {}).get("executed")}
        if failed or nb not in todo:
            if current:
                row["status"] = UP_TO_DATE
            else:
                # no run time or date of an execution that is not current: the total counts only current ones
                row.update(seconds=None, executed=None)
                if failed:
                    row["status"] = "not executed (an earlier notebook failed)"
                elif record is not None and out.exists():
                    row["status"] = f"stale (not executed in this run; last executed {record.get('executed')})"
                else:
                    row["status"] = "not executed"
            status["notebooks"].append(row)
            continue
        if current and not force:
            print(f"== {rel} up to date (executed {record.get('executed')}, {record.get('seconds')} s)", flush=True)
            status["notebooks"].append(dict(row, status=UP_TO_DATE))
            continue
        stamp_path(out).unlink(missing_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"== executing {rel} (profile={profile})", flush=True)
        executed = datetime.datetime.now().isoformat(timespec="seconds")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters={"profile": profile}, kernel_name=KERNEL,
                                cwd=str(nb.parent), progress_bar=False, log_output=True,
                                request_save_on_cell_execute=False)
            state = "ok"
        except pm.PapermillExecutionError as e:
            state = f"failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
            failed = f"{rel}: {state}"
        seconds = round(time.perf_counter() - t0, 1)
        if state == "ok":
            stamp_path(out).write_text(json.dumps({"stamp": digest, "profile": profile, "executed": executed,
                                                   "seconds": seconds, "depends": sorted(deps)}, indent=2) + "\n")
        status["notebooks"].append({"notebook": rel, "seconds": seconds, "executed": executed, "status": state})
        print(f"   {state} in {seconds:.1f} s", flush=True)
    status["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    if stage == STAGE:
        write_status(status)
    if failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


def write_status(status: dict) -> None:
    from ..core.models import model_inventory
    from ..measure.environment import environment
    from .results import save_result

    status["environment"] = environment()
    status["models"] = model_inventory()
    save_result("status", status)
    (STAGE / "book" / "status.md").write_text(render_status(status))


def render_status(status: dict) -> str:
    env = status["environment"]

    def seconds(n):
        return "—" if n.get("seconds") is None else f"{n['seconds']:.1f}"

    lines = ["# Build status", "",
             f"Generated by `python -m diaropt.book execute` at {status['finished']} "
             f"(profile **{status['profile']}**). Every number in this book was measured by the notebook "
             f"executions listed here; a notebook marked *{UP_TO_DATE}* was not executed again because its "
             "notebook, the package, the configuration, the data manifest, the profile and the chapters it "
             "reads had not changed since the execution whose time and run time it shows.", "",
             "## Notebooks", "", "| notebook | executed at | run time (s) | status |", "|---|---|---:|---|"]
    lines += [f"| {n['notebook']} | {n.get('executed') or '—'} | {seconds(n)} | {n['status']} |"
              for n in status["notebooks"]]
    total = sum(n["seconds"] for n in status["notebooks"] if n.get("seconds") is not None)
    lines += [f"| **total** | | {total:.1f} | |", "", "## Machine", "", "| | |", "|---|---|",
              f"| CPU | {env['cpu']} |", f"| logical cores | {env['logical_cores']} |",
              f"| torch intra-op / inter-op threads | {env['torch_threads']} / {env['torch_interop_threads']} |",
              f"| SIMD flags | {' '.join(env['cpu_flags']) or 'n/a'} |",
              f"| memory | {env['memory_gib']} GiB |", f"| platform | {env['platform']} |",
              f"| Python | {env['python']} |", "", "## Library versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env["versions"].items()]
    lines += ["", "## Models", "", "| model | licence | sha256 | present |", "|---|---|---|---|"]
    lines += [f"| {m['model_id']} | {m['license']} | `{m['sha256'][:16]}…` | {m['present']} |" for m in status["models"]]
    return "\n".join(lines) + "\n"


def build() -> int:
    if not (STAGE / "_toc.yml").exists():
        print("error: nothing executed yet: run `python -m diaropt.book execute` first", file=sys.stderr)
        return 1
    extra = STAGE / "_extra"
    if not MATHJAX.exists():
        print(f"error: {MATHJAX} missing: install Debian's libjs-mathjax (scripts/setup.sh does)", file=sys.stderr)
        return 1
    if not (extra / "mathjax").exists():
        # MathJax 2 (Debian's libjs-mathjax), served from the book's root: no CDN. It goes through
        # html_extra_path, not _static, so Sphinx does not register its files as page scripts.
        shutil.copytree(MATHJAX, extra / "mathjax", symlinks=False,
                        ignore=shutil.ignore_patterns("unpacked", "test", "png", "*.map"))
    out = BUILD / "jb"
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE), "--path-output", str(out),
           "--builder", "html", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        return proc.returncode
    html = BUILD / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(out / "_build" / "html", html)
    print(f"book: {html / 'index.html'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diaropt.book")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("execute")
    e.add_argument("--profile", default="full", choices=["full", "smoke"])
    e.add_argument("--only", action="append", metavar="SLUG",
                   help="execute this chapter (slug or NN_slug; repeatable) and the chapters it depends on")
    e.add_argument("--force", action="store_true", help="execute even chapters whose executed copy is up to date")
    sub.add_parser("build")
    args = p.parse_args(argv)
    if args.cmd == "build":
        return build()
    try:
        return execute(args.profile, only=args.only, force=args.force)
    except UnknownChapter as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
