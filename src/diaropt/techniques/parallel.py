"""Chapter 08, parallel processing: many files at once, with threads, processes or a Dask
cluster.

Every mode runs the same worker task (``diarize_one``) with the same pipeline variant; each
worker builds its pipeline once. ``threads`` is the number of compute threads *per worker*
(torch and ONNX Runtime), so ``workers * threads`` above the core count is oversubscription.

The guide's Swift ``processBatch`` is ported in ``guide_process_batch``: when a slot is needed
it awaits ``group.next()`` and throws the finished task's result away, so only the last
``maxConcurrent`` results survive. ``process_batch`` keeps every result, in input order.

``compare_modes`` runs the chapter's table: every mode of ``MODES`` on the same files, with its
wall time, start-up, peak memory per process, throughput against the sequential run and
whether its output equals the sequential output; ``verdicts`` reads the guide's claims off it.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from ..measure.memory import peak_rss_mib

# (mode, number of workers, compute threads per worker); run by ``compare_modes`` in this order.
MODES = [("sequential", 1, 2), ("threads", 2, 1), ("processes", 2, 1), ("processes", 2, 2),
         ("processes", 4, 1), ("dask (local cluster)", 2, 1)]

SETTINGS = {
    # modes: indices into MODES; timed_files: how many test files the modes diarize (None: all)
    "full": {"modes": [0, 1, 2, 3, 4, 5], "timed_files": None},
    "smoke": {"modes": [0, 2, 5], "timed_files": 2},
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


def _timed(t0: float, map_fn, recs, workers: int) -> dict:
    """Warm every worker on one file each, then time ``map_fn`` over all recordings."""
    map_fn(recs[:workers])
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = map_fn(recs)
    return {"wall": time.perf_counter() - t1, "results": out, "startup": startup}


def run_sequential(recs, threads: int = 2, **kw) -> dict:
    """This process, one file after another: the baseline every mode is compared with."""
    worker_setup(threads=threads, **kw)
    diarize_one(recs[0], threads=threads, **kw)  # warm-up
    t0 = time.perf_counter()
    out = [diarize_one(r, threads=threads, **kw) for r in recs]
    return {"wall": time.perf_counter() - t0, "results": out, "startup": 0.0}


def run_threads(recs, workers: int, threads: int = 1, **kw) -> dict:
    """A thread pool in this process; one pipeline per thread (pyannote pipelines hold state)."""
    variant, embedding = kw.get("variant", "optimized"), kw.get("embedding", "auto")

    def task(rec):
        return diarize_one(rec, variant=variant, embedding=embedding, threads=threads)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers, initializer=worker_setup, initargs=(variant, embedding, threads)) as pool:
        return _timed(t0, lambda rs: list(pool.map(task, rs)), recs, workers)


def run_processes(recs, workers: int, threads: int = 1, **kw) -> dict:
    """A spawn-started process pool (fork after torch/OpenMP initialisation can deadlock)."""
    import functools
    import multiprocessing as mp

    variant, embedding = kw.get("variant", "optimized"), kw.get("embedding", "auto")
    task = functools.partial(diarize_one, variant=variant, embedding=embedding, threads=threads)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=worker_setup,
                             initargs=(variant, embedding, threads)) as pool:
        pids = set()
        while len(pids) < workers:  # every worker started and built its pipeline
            pids |= set(pool.map(_ready_barrier, [0.2] * workers))
        return _timed(t0, lambda rs: list(pool.map(task, rs)), recs, workers)


def run_dask(recs, workers: int, threads: int = 1, **kw) -> dict:
    """The same tasks on a local Dask cluster (one process per worker, one task at a time)."""
    from dask.distributed import Client, LocalCluster

    variant, embedding = kw.get("variant", "optimized"), kw.get("embedding", "auto")
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.run(worker_setup, variant, embedding, threads)
        return _timed(t0, lambda rs: client.gather(client.map(diarize_one, rs, variant=variant, embedding=embedding,
                                                             threads=threads, pure=False)), recs, workers)


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

def _runner(mode: str):
    return {"sequential": run_sequential, "threads": run_threads, "processes": run_processes,
            "dask (local cluster)": run_dask}[mode]


def compare_modes(recs, modes, cores: int, embedding: str = "auto", variant: str = "optimized"):
    """Run each ``(mode, workers, threads)`` over ``recs`` (the first one must be sequential) and
    return ``(table, runs)``: one row per mode (start-up, wall, RTFx, peak RSS per process,
    throughput vs sequential, same output as sequential) and the raw results by row label."""
    import pandas as pd

    audio = sum(r.duration for r in recs)
    runs, rows = {}, []
    for mode, workers, threads in modes:
        kw = {"embedding": embedding, "variant": variant}
        fn = _runner(mode)
        out = fn(recs, threads=threads, **kw) if mode == "sequential" else fn(recs, workers=workers, threads=threads, **kw)
        label = f"{mode}, {workers} x {threads} thread{'s' if threads > 1 else ''}"
        runs[label] = out
        per_pid: dict[int, float] = {}
        for r in out["results"]:
            per_pid[r["pid"]] = max(per_pid.get(r["pid"], 0.0), r["peak_rss_mib"])
        rows.append({"mode": label, "workers x threads": workers * threads, "oversubscribed": workers * threads > cores,
                     "start-up (s)": out["startup"], "wall (s)": out["wall"], "RTFx": audio / out["wall"],
                     "peak RSS per process (MiB)": max(per_pid.values()), "processes": len(per_pid)})
    table = pd.DataFrame(rows).set_index("mode")
    seq_label = next(iter(runs))
    table["throughput vs sequential"] = table["RTFx"] / table.loc[seq_label, "RTFx"]
    seq_turns = [r["turns"] for r in runs[seq_label]["results"]]
    table["same output as sequential"] = [[r["turns"] for r in o["results"]] == seq_turns for o in runs.values()]
    return table, runs


def first_value(table, prefix: str, column: str = "throughput vs sequential") -> float:
    """``column`` of the first mode whose label starts with ``prefix`` (NaN when none ran)."""
    rows = table[table.index.str.startswith(prefix)]
    return float(rows[column].iloc[0]) if len(rows) else float("nan")


def verdicts(table, kept: int, files: int) -> dict[str, str]:
    """The verdict column of the chapter's table, from the measurements: throughput (a real gain
    is 1.1x or more), oversubscription (confirmed when no oversubscribed mode beats the best one
    that fits the cores) and the snippet (wrong when it returned fewer results than files)."""
    gains = table["throughput vs sequential"].iloc[1:]
    best = float(gains.max()) if len(gains) else float("nan")
    over = table.loc[table["oversubscribed"], "throughput vs sequential"]
    fits = table.loc[~table["oversubscribed"], "throughput vs sequential"]  # sequential included
    if best >= 1.1:
        throughput = "partly: a gain, bounded by the cores, not by the number of files"
    else:
        throughput = "refuted here: no gain on these cores"
    if not len(over):
        limit = "not measured in this profile"
    elif over.max() <= fits.max():
        limit = "confirmed: more threads than cores does not help"
    else:
        limit = "refuted here: an oversubscribed mode was fastest"
    snippet = ("wrong as written; fixed above" if kept < files
               else "no loss here: the bug needs more files than the concurrency limit")
    return {"par_verdict_throughput": throughput, "par_verdict_limit": limit, "par_verdict_snippet": snippet}
