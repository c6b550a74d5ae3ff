"""Parallel multi-file processing (technique 9): the guide's batch loses results; the fixed one
keeps all, in order; process pools and Dask give the sequential output."""
import asyncio

import pytest

from diaropt.techniques import parallel


async def _slow_double(x):
    await asyncio.sleep(0.01 * (x % 3))
    return 2 * x


def test_guide_process_batch_drops_all_but_the_last_results():
    files = list(range(7))
    got = asyncio.run(parallel.guide_process_batch(files, _slow_double, max_concurrent=2))
    assert len(got) == 2  # 5 of 7 results were awaited by `group.next()` and thrown away
    assert set(got) < {2 * f for f in files}


def test_fixed_process_batch_keeps_every_result_in_order():
    files = list(range(7))
    got = asyncio.run(parallel.process_batch(files, _slow_double, max_concurrent=2))
    assert got == [2 * f for f in files]


def test_fixed_process_batch_respects_the_concurrency_limit():
    running, peak = 0, 0

    async def task(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return x

    asyncio.run(parallel.process_batch(list(range(10)), task, max_concurrent=3))
    assert peak == 3


@pytest.mark.slow
def test_threads_processes_and_dask_reproduce_the_sequential_output(provisioned):
    from diaropt.core import data

    sample = data.pyannote_sample()
    half = data.Recording("sample-half", sample.waveform[:, :240000], None, None, "pyannote-sample", "test")
    recs = [sample, half]
    seq = parallel.run_sequential(recs, threads=1, embedding="campplus")
    for run in (parallel.run_threads, parallel.run_processes, parallel.run_dask):
        out = run(recs, workers=2, threads=1, embedding="campplus")
        assert [r["turns"] for r in out["results"]] == [r["turns"] for r in seq["results"]], run.__name__


def test_run_async_works_inside_a_running_loop():
    async def outer():
        return parallel.run_async(_slow_double(21))

    assert asyncio.run(outer()) == 42
    assert parallel.run_async(_slow_double(1)) == 2
