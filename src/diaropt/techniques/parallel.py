"""Chapter 08, parallel processing: many files at once, with threads, processes or a Dask
cluster.

Every mode runs the same worker task (``diarize_one``) with the same pipeline variant; each
worker builds its pipeline once. ``threads`` is the number of compute threads *per worker*
(torch and ONNX Runtime), so ``workers * threads`` above the core count is oversubscription.

The guide's Swift ``processBatch`` is ported in ``guide_process_batch``: when a slot is needed
it awaits ``group.next()`` and throws the finished task's result away, so only the last
``maxConcurrent`` results survive. ``process_batch`` keeps every result, in input order.

``compare_modes`` runs the chapter's table: every mode of ``MODES`` started once (``open_mode``),
then run on the same files in turn for several rounds, with its median wall time and start-up,
peak memory per process, throughput against the sequential run (the median of per-round ratios,
with their range) and whether its output equals the sequential output; ``verdicts`` reads the
guide's claims off it.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import numpy as np

from ..measure.memory import peak_rss_mib
from ..measure.stats import Ratio

# (mode, number of workers, compute threads per worker); run by ``compare_modes`` in this order.
MODES = [("sequential", 1, 2), ("threads", 2, 1), ("processes", 2, 1), ("processes", 2, 2),
         ("processes", 4, 1), ("dask (local cluster)", 2, 1)]

SETTINGS = {
    # modes: indices into MODES; timed_files: how many test files the modes diarize (None: all)
    # rounds: every mode runs once per round, the modes in turn
    "full": {"modes": [0, 1, 2, 3, 4, 5], "timed_files": None, "rounds": 3},
    "smoke": {"modes": [0, 2, 5], "timed_files": 2, "rounds": 3},
}

_LOCAL = threading.local()
_BUILD = threading.Lock()  # building a pipeline exports ONNX models: torch's exporter state is global


def worker_setup(variant: str = "optimized", embedding: str = "auto", threads: int = 1) -> int:
    """Build this worker's (thread's) pipeline once; returns the process id."""
    import torch

    from ..pipelines.registry import get_variant

    torch.set_num_threads(threads)
    key = (variant, embedding, threads)
    if getattr(_LOCAL, "key", None) != key:
        kwargs = {"threads": threads} if variant == "optimized" else {}
        with _BUILD:
            _LOCAL.variant, _LOCAL.key = get_variant(variant, embedding=embedding, **kwargs), key
    return os.getpid()


def diarize_one(rec, variant: str = "optimized", embedding: str = "auto", threads: int = 1) -> dict:
    """Worker task: diarize one recording; turns, wall seconds, process id and peak RSS."""
    worker_setup(variant, embedding, threads)
    t0 = time.perf_counter()
    hyp, _ = _LOCAL.variant.run(rec)
    seconds = time.perf_counter() - t0
    turns = [(round(s.start, 4), round(s.end, 4), label) for s, _, label in hyp.itertracks(yield_label=True)]
    return {"uri": rec.uri, "turns": turns, "seconds": seconds, "pid": os.getpid(), "peak_rss_mib": peak_rss_mib()}


def _ready_barrier(seconds: float = 0.5) -> int:
    time.sleep(seconds)
    return os.getpid()


@contextmanager
def open_mode(mode: str, workers: int, threads: int, warm: list, variant: str = "optimized", embedding: str = "auto"):
    """Start a mode's workers (each builds its pipeline once) and warm them on ``warm`` (one file
    per worker); yields ``(start-up seconds, map_fn)`` where ``map_fn(recs)`` diarizes ``recs``
    with ``diarize_one`` and returns the results in input order. The workers stay up until the
    block ends, so that one pool can be timed many times.

    - ``sequential``: this process, one file after another (the baseline every mode is compared with);
    - ``threads``: a thread pool in this process, one pipeline per thread (pyannote pipelines hold state);
    - ``processes``: a spawn-started process pool (fork after torch/OpenMP initialisation can deadlock);
    - ``dask (local cluster)``: the same tasks on a local Dask cluster (one process per worker, one
      task at a time)."""
    import functools

    task = functools.partial(diarize_one, variant=variant, embedding=embedding, threads=threads)
    t0 = time.perf_counter()
    with ExitStack() as stack:
        if mode == "sequential":
            worker_setup(variant, embedding, threads)

            def map_fn(rs):
                return [task(r) for r in rs]
        elif mode == "threads":
            pool = stack.enter_context(ThreadPoolExecutor(workers, initializer=worker_setup,
                                                          initargs=(variant, embedding, threads)))

            def map_fn(rs):
                return list(pool.map(task, rs))
        elif mode == "processes":
            import multiprocessing as mp

            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                           initializer=worker_setup, initargs=(variant, embedding, threads)))
            pids = set()
            while len(pids) < workers:  # every worker started and built its pipeline
                pids |= set(pool.map(_ready_barrier, [0.2] * workers))

            def map_fn(rs):
                return list(pool.map(task, rs))
        elif mode == "dask (local cluster)":
            from dask.distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None, silence_logs=40))
            client = stack.enter_context(Client(cluster))
            client.run(worker_setup, variant, embedding, threads)

            def map_fn(rs):
                return client.gather(client.map(diarize_one, rs, variant=variant, embedding=embedding,
                                                threads=threads, pure=False))
        else:
            raise ValueError(f"unknown mode {mode!r}: one of sequential, threads, processes, dask (local cluster)")
        map_fn(warm[:max(1, workers)])
        yield time.perf_counter() - t0, map_fn


def run_mode(mode: str, recs, workers: int = 1, threads: int = 1, **kw) -> dict:
    """One timed pass of a mode over ``recs`` after its start-up (``open_mode``, warmed on the
    first files): ``{"wall", "results", "startup"}``."""
    with open_mode(mode, workers, threads, recs, **kw) as (startup, map_fn):
        t0 = time.perf_counter()
        out = map_fn(recs)
        return {"wall": time.perf_counter() - t0, "results": out, "startup": startup}


def run_sequential(recs, threads: int = 2, **kw) -> dict:
    return run_mode("sequential", recs, 1, threads, **kw)


def run_threads(recs, workers: int, threads: int = 1, **kw) -> dict:
    return run_mode("threads", recs, workers, threads, **kw)


def run_processes(recs, workers: int, threads: int = 1, **kw) -> dict:
    return run_mode("processes", recs, workers, threads, **kw)


def run_dask(recs, workers: int, threads: int = 1, **kw) -> dict:
    return run_mode("dask (local cluster)", recs, workers, threads, **kw)


# ---- the guide's snippet ---------------------------------------------------------------------

async def guide_process_batch(files, process_file, max_concurrent: int) -> list:
    """The guide's ``processBatch`` (Swift ``withThrowingTaskGroup``), ported as written."""
    pending: set[asyncio.Task] = set()
    for index, file in enumerate(files):
        if index >= max_concurrent:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            pending |= done  # any other finished task stays in the group
            _ = finished.result()  # `_ = try await group.next()`: the result is discarded
        pending.add(asyncio.ensure_future(process_file(file)))
    return [await t for t in pending]  # `group.reduce(into: [])`: only what is left


async def process_batch(files, process_file, max_concurrent: int) -> list:
    """Fixed: at most ``max_concurrent`` at once, every result kept, in input order."""
    sem = asyncio.Semaphore(max_concurrent)

    async def one(file):
        async with sem:
            return await process_file(file)

    return list(await asyncio.gather(*(one(f) for f in files)))


def run_async(coro):
    """``asyncio.run`` that also works where an event loop is already running (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ---- the chapter's comparison ----------------------------------------------------------------

def compare_modes(recs, modes, cores: int, embedding: str = "auto", variant: str = "optimized", rounds: int = 3,
                  progress: bool = True):
    """Start every ``(mode, workers, threads)`` (the first one must be sequential; ``open_mode``,
    start-up timed), then run the modes in turn over ``recs`` for ``rounds`` rounds with every
    pool kept up, so that a load spike hits every mode and no round pays a start-up. Returns
    ``(table, runs)``: one row per mode (start-up, median wall, RTFx, peak RSS per process,
    throughput against the sequential run as the median of per-round ratios with their range,
    and whether every round's output equals the sequential output) and the raw results of each
    mode's first round by row label. Every pool is up at once: memory is the sum of the modes'."""
    import pandas as pd
    from tqdm.auto import tqdm

    from ..measure.stats import speed_ratio

    audio = sum(r.duration for r in recs)
    labels = [f"{mode}, {workers} x {threads} thread{'s' if threads > 1 else ''}" for mode, workers, threads in modes]
    runs, walls, startups, rss, outputs = {}, {}, {}, {}, {}
    with ExitStack() as stack:
        pools = {}
        for label, (mode, workers, threads) in zip(labels, modes):
            startups[label], pools[label] = stack.enter_context(open_mode(mode, workers, threads, recs, variant, embedding))
        for _ in tqdm(range(rounds), desc="rounds of every mode", disable=not progress):
            for label in labels:
                t0 = time.perf_counter()
                out = pools[label](recs)
                walls.setdefault(label, []).append(time.perf_counter() - t0)
                runs.setdefault(label, out)
                outputs.setdefault(label, []).append([r["turns"] for r in out])
                per_pid = rss.setdefault(label, {})
                for r in out:
                    per_pid[r["pid"]] = max(per_pid.get(r["pid"], 0.0), r["peak_rss_mib"])
    seq = labels[0]
    rows = []
    for (_, workers, threads), label in zip(modes, labels):
        ratio = speed_ratio(walls[seq], walls[label])
        wall = float(np.median(walls[label]))
        rows.append({"mode": label, "workers x threads": workers * threads, "oversubscribed": workers * threads > cores,
                     "start-up (s)": startups[label], "wall (s)": wall, "RTFx": audio / wall,
                     "peak RSS per process (MiB)": max(rss[label].values()), "processes": len(rss[label]),
                     "throughput vs sequential": ratio.median, "throughput low": ratio.low, "throughput high": ratio.high,
                     "rounds": ratio.repeats, "unstable": ratio.unstable,
                     "same output as sequential": all(o == outputs[seq][0] for o in outputs[label])})
    return pd.DataFrame(rows).set_index("mode"), runs


def mode_ratio(table, label: str) -> Ratio:
    """A mode's throughput over the sequential run as a ``measure.stats.Ratio``."""
    row = table.loc[label]
    return Ratio.from_columns(row, "throughput vs sequential", "throughput low", "throughput high")


def first_value(table, prefix: str, column: str = "throughput vs sequential") -> float:
    """``column`` of the first mode whose label starts with ``prefix`` (NaN when none ran)."""
    rows = table[table.index.str.startswith(prefix)]
    return float(rows[column].iloc[0]) if len(rows) else float("nan")


def verdicts(table, kept: int, files: int) -> dict[str, str]:
    """The verdict column of the chapter's table, from the measurements: throughput (a real gain
    is ``MINOR_GAIN``, 1.1x, or more: confirmed by any mode whose per-round ratios settle it,
    ``book.verdicts.decided``), oversubscription (confirmed when no oversubscribed mode beats the
    best one that fits the cores: by median, or, when a ratio it compares is unstable, by ranges
    that do not overlap; otherwise not judged)
    and the snippet (wrong when it returned fewer results than files)."""
    from ..book.verdicts import MINOR_GAIN, decided

    modes = list(table.index[1:])
    calls = [decided(mode_ratio(table, m), lambda v: v >= MINOR_GAIN) for m in modes]
    gained = True if any(calls) else (False if all(c is False for c in calls) else None)
    throughput = {True: "partly: a gain, bounded by the cores, not by the number of files",
                  False: "refuted here: no gain on these cores", None: "unstable: not judged"}[gained]
    over = table.loc[table["oversubscribed"], "throughput vs sequential"]
    fits = table.loc[~table["oversubscribed"], "throughput vs sequential"]  # sequential included
    if not len(over):
        limit = "not measured in this profile"
    else:
        o, f = mode_ratio(table, over.idxmax()), mode_ratio(table, fits.idxmax())
        if not (o.unstable or f.unstable):
            helps = o.median > f.median
        else:  # a spread ratio: only ranges that do not overlap settle it
            helps = True if o.low > f.high else (False if o.high <= f.low else None)
        limit = {False: "confirmed: more threads than cores does not help", None: "unstable: not judged",
                 True: "refuted here: an oversubscribed mode was fastest"}[helps]
    snippet = ("wrong as written; fixed above" if kept < files
               else "no loss here: the bug needs more files than the concurrency limit")
    return {"par_verdict_throughput": throughput, "par_verdict_limit": limit, "par_verdict_snippet": snippet}
