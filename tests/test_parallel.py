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


def test_compare_modes_measures_against_the_sequential_run(monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    recs = [SimpleNamespace(uri=f"f{i}", duration=10.0) for i in range(4)]
    order, opened = [], []
    walls = {"sequential": iter([10.0, 8.0, 12.0]), "processes": iter([5.0, 2.0, 4.0]), "threads": iter([12.5, 10.0, 15.0])}
    pids = {"sequential": [1], "processes": [2, 3], "threads": [1]}
    clock = [0.0]
    monkeypatch.setattr(parallel.time, "perf_counter", lambda: clock[0])

    @contextmanager
    def fake_open(mode, workers, threads, warm, variant, embedding):
        assert (variant, embedding) == ("optimized", "campplus")
        opened.append(mode)

        def map_fn(rs):
            order.append(mode)
            clock[0] += next(walls[mode])  # the wall time of this pass
            turns = "other" if mode == "threads" else "same"
            return [{"uri": r.uri, "turns": [(0.0, 1.0, turns if i == 0 else "A")], "pid": pids[mode][i % len(pids[mode])],
                     "peak_rss_mib": 100.0 + i} for i, r in enumerate(rs)]
        yield 0.5 * len(pids[mode]), map_fn

    monkeypatch.setattr(parallel, "open_mode", fake_open)
    modes = [("sequential", 1, 2), ("processes", 2, 1), ("threads", 4, 1)]
    table, runs = parallel.compare_modes(recs, modes, cores=2, embedding="campplus", rounds=3, progress=False)
    assert opened == ["sequential", "processes", "threads"]  # every pool started once
    assert order == ["sequential", "processes", "threads"] * 3  # then the modes in turn, round by round
    assert list(table.index) == ["sequential, 1 x 2 threads", "processes, 2 x 1 thread", "threads, 4 x 1 thread"]
    # per-round ratios 10/5, 8/2, 12/4 (paired by round; sorted walls would give 8/2, 10/4, 12/5): median 3.0
    assert table["throughput vs sequential"].tolist() == [1.0, 3.0, 0.8]
    assert table["throughput low"].tolist() == [1.0, 2.0, 0.8] and table["throughput high"].tolist() == [1.0, 4.0, 0.8]
    assert table["rounds"].tolist() == [3, 3, 3]
    assert table["RTFx"].iloc[0] == 4.0  # 40 s of audio over the median wall, 10 s
    assert table["start-up (s)"].tolist() == [0.5, 1.0, 0.5]
    assert table["processes"].tolist() == [1, 2, 1]
    assert table["peak RSS per process (MiB)"].tolist() == [103.0, 103.0, 103.0]
    assert table["oversubscribed"].tolist() == [False, False, True]
    assert table["same output as sequential"].tolist() == [True, True, False]
    assert parallel.first_value(table, "processes") == 3.0
    assert parallel.first_value(table, "dask") != parallel.first_value(table, "dask")  # NaN: not run
    v = parallel.verdicts(table, kept=2, files=4)
    assert v["par_verdict_throughput"].startswith("partly")  # 2.0x-4.0x: spread, but every round gains
    assert v["par_verdict_limit"].startswith("confirmed")
    assert v["par_verdict_snippet"].startswith("wrong")
    shaky = table.assign(**{"throughput vs sequential": [1.0, 1.2, 0.8], "throughput low": [1.0, 0.9, 0.8],
                            "throughput high": [1.0, 1.5, 0.85], "unstable": [False, True, False]})
    shaky_v = parallel.verdicts(shaky, kept=2, files=4)
    assert shaky_v["par_verdict_throughput"] == "unstable: not judged"
    assert shaky_v["par_verdict_limit"].startswith("confirmed")  # 0.80x-0.85x below all of a spread 0.90x-1.50x
    overlap = shaky.assign(**{"throughput high": [1.0, 1.5, 1.0]})
    assert parallel.verdicts(overlap, kept=2, files=4)["par_verdict_limit"] == "unstable: not judged"
    # another mode settles it: a gain in every round
    two = shaky.assign(**{"throughput vs sequential": [1.0, 1.2, 1.3], "throughput low": [1.0, 0.9, 1.25],
                          "throughput high": [1.0, 1.5, 1.35]})
    assert parallel.verdicts(two, kept=2, files=4)["par_verdict_throughput"].startswith("partly")
    assert parallel.verdicts(table.iloc[:2], kept=4, files=4)["par_verdict_limit"] == "not measured in this profile"
