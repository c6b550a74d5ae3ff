"""The content-addressed cache (technique 6): hits, misses, eviction, invalidation, disk tier."""
import numpy as np
import pytest
import torch

from diaropt.core.constants import SEGMENTATION_FRAMES, WINDOW_SAMPLES
from diaropt.techniques.caching import CachedModel, ContentCache, cache_key, model_fingerprint


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        return self.lin(x)


def test_hits_return_the_computed_values_and_skip_the_model():
    torch.manual_seed(0)
    m = Counting()
    cached = CachedModel(m, ContentCache())
    x = torch.randn(3, 4)
    first = cached(x)
    again = cached(x)
    assert m.calls == 3
    assert torch.equal(first, again) and torch.allclose(first, m.lin(x))
    assert cached.cache.stats.hits == 3 and cached.cache.stats.misses == 3


def test_only_misses_are_computed_in_a_mixed_batch():
    m = Counting()
    cached = CachedModel(m, ContentCache())
    a, b = torch.randn(2, 4), torch.randn(1, 4)
    cached(a)
    out = cached(torch.cat([a[:1], b, a[1:]]))
    assert m.calls == 3
    assert torch.allclose(out, m.lin(torch.cat([a[:1], b, a[1:]])), atol=1e-6)


def test_changed_weights_or_settings_miss():
    m = Counting()
    cache = ContentCache()
    x = torch.randn(2, 4)
    CachedModel(m, cache)(x)
    with torch.no_grad():
        m.lin.weight[0, 0] += 1e-3  # e.g. a re-quantized model
    fresh = CachedModel(m, cache)
    out = fresh(x)
    assert m.calls == 4 and torch.allclose(out, m.lin(x))
    CachedModel(m, cache, params={"step": 0.25})(x)
    assert m.calls == 6


def test_keys_depend_on_every_sample():
    x = np.zeros(WINDOW_SAMPLES, np.float32)
    y = x.copy()
    y[-1] = np.float32(1e-7)
    assert cache_key(x, "m") != cache_key(y, "m")
    assert cache_key(x, "m") == cache_key(torch.from_numpy(x.copy()), "m")
    assert cache_key(x, "m", {"a": 1, "b": 2}) == cache_key(x, "m", {"b": 2, "a": 1})


def test_memory_is_bounded_and_evicts_least_recently_used():
    cache = ContentCache(max_bytes=3 * 400)
    for i in range(3):
        cache.put(f"k{i}", np.full(100, i, np.float32))  # 400 bytes each
    cache.get("k0")  # k0 is now the most recent
    cache.put("k3", np.zeros(100, np.float32))
    assert cache.memory_bytes <= 1200
    assert cache.get("k1") is None  # least recently used went first
    assert cache.get("k0") is not None and cache.get("k3") is not None


def test_disk_tier_survives_a_new_process_cache(tmp_path):
    a = ContentCache(directory=tmp_path)
    a.put("k", np.arange(5, dtype=np.float32))
    b = ContentCache(directory=tmp_path)  # e.g. the next run
    got = b.get("k")
    assert got is not None and np.array_equal(got, np.arange(5)) and b.stats.disk_hits == 1


def test_fingerprint_is_stable_and_sensitive():
    torch.manual_seed(0)
    m = Counting()
    f = model_fingerprint(m)
    assert f == model_fingerprint(m)
    with torch.no_grad():
        m.lin.bias[0] = m.lin.bias[0] + 1
    assert model_fingerprint(m) != f


@pytest.mark.slow
def test_cached_pipeline_output_equals_uncached_and_reruns_fully_hit(provisioned):
    from diaropt.core import data
    from diaropt.pipelines import optimized
    from diaropt.pipelines.reference import run_pyannote
    from diaropt.techniques import caching

    rec = data.pyannote_sample()
    cache = ContentCache()
    cached = caching.cached_optimized_pipeline(cache, "campplus")
    plain = optimized.build_optimized_pipeline("campplus")
    ref, _ = run_pyannote(plain, rec)
    first, _ = run_pyannote(cached, rec)
    misses = cache.stats.misses
    again, _ = run_pyannote(cached, rec)
    assert first == ref and again == ref  # pyannote Annotations compare by content
    assert misses > 0 and cache.stats.misses == misses  # the re-run computed nothing


def test_quantized_models_get_their_own_fingerprint():
    from torch.ao.quantization import quantize_dynamic

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4))
    q1 = quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    q2 = quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    assert model_fingerprint(q1) == model_fingerprint(q2) != model_fingerprint(m)


# ---- the chapter's measurements (techniques.caching) ---------------------------------------

class Frames(torch.nn.Module):
    """A stand-in segmentation: (N, 1, L) -> (N, L // 4, 7)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        n, _, length = x.shape
        return (x.reshape(n, length // 4, 4).sum(-1, keepdim=True) * torch.arange(7.0) * self.scale)


def test_the_guide_cache_answers_a_switched_model_with_the_old_output():
    from diaropt.techniques import caching

    torch.manual_seed(0)
    old, new = Frames(1.0), Frames(-1.0)  # e.g. fp32, then a re-quantized model after an update
    windows = torch.randn(5, 1, 40)
    rows, frames = caching.stale_answers(old, new, windows)
    guide, ours = rows
    assert frames == 5 * 10
    with torch.no_grad():
        expected = (old(windows) - new(windows)).abs().max()
    assert guide["max |answer - int8 output|"] == pytest.approx(float(expected))
    assert guide["frames decoded to another class"] > 0
    assert ours["max |answer - int8 output|"] == 0.0 and ours["frames decoded to another class"] == 0


def test_halves_and_thresholds():
    from diaropt.core.data import Recording
    from diaropt.techniques import caching

    rec = Recording("a", torch.arange(11.0)[None], "ref", "uem", "ami", "test")
    (half,) = caching.halves([rec])
    assert half.uri == "a-first-half" and half.waveform.shape[-1] == 5 and half.reference is None
    assert (half.source, half.split) == ("ami", "test")
    params = {"segmentation": {"min_duration_off": 0.0}, "clustering": {"threshold": 0.6, "method": "centroid"}}
    assert caching.thresholds_around(params) == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7])

    class Pipe:
        def instantiate(self, p):
            self.p = p

    pipe = Pipe()
    caching.set_threshold(pipe, params, 0.7)
    assert pipe.p == {"segmentation": {"min_duration_off": 0.0}, "clustering": {"threshold": 0.7, "method": "centroid"}}
    assert params["clustering"]["threshold"] == 0.6  # the frozen parameters are not touched


def test_entry_sizes_count_one_window_per_step_and_one_block_per_10_s():
    from diaropt.techniques import caching

    class Resnet:  # trunk_and_pool's WeSpeaker interface
        feat_dim = 80

        def forward_frames(self, fbank):
            return torch.zeros(fbank.shape[0], 32, 10, 200)

    class Model:
        resnet = Resnet()

        def compute_fbank(self, w):
            return w

    mem = caching.entry_sizes(Model(), segmentation_step=0.25).set_index("entry")
    seg, trunk = mem.iloc[0], mem.iloc[1]
    assert seg["bytes"] == SEGMENTATION_FRAMES * 7 * 4 and seg["entries per hour of audio"] == 1440
    assert trunk["bytes"] == 32 * 10 * 200 * 4 and trunk["entries per hour of audio"] == 360
    assert mem.index[1] == "embedding-trunk block (320 x 200 float32)"  # channels x frequency, time
    assert trunk["MiB per hour"] == pytest.approx(32 * 10 * 200 * 4 * 360 / 2**20)


def test_workloads_alternate_uncached_and_cached_round_by_round(monkeypatch):
    """``caching.workloads`` with stand-in pipelines: the order of runs, the per-round pairing,
    and hit rates counted per cached run even when a reset replaces the cache's statistics."""
    from types import SimpleNamespace

    from diaropt.techniques import caching

    order = []

    class Tier:
        def clear(self):
            order.append("tier")

    cache = SimpleNamespace(stats=SimpleNamespace(hits=0, misses=0), memory=Tier(), disk=Tier(), memory_bytes=0)

    def clear():
        order.append("clear")
        cache.stats = SimpleNamespace(hits=0, misses=0)  # as ContentCache.clear: fresh statistics
    cache.clear = clear
    plain, pipe = SimpleNamespace(name="plain"), SimpleNamespace(name="pipe")
    cached_seconds = iter([0.5, 1.0, 0.25] + [0.1] * 50)

    def run_all(p, recs):
        order.append(p.name)
        if p is plain:
            return 2.0, 0.3
        cache.stats.hits += 3
        cache.stats.misses += 1
        return next(cached_seconds), 0.2

    monkeypatch.setattr(caching, "run_all", run_all)
    monkeypatch.setattr(caching, "run_pyannote", lambda p, rec: order.append(f"warm {p.name}"))
    monkeypatch.setattr(caching, "set_threshold", lambda p, params, thr: None)
    monkeypatch.setattr(caching, "halves", lambda recs: recs)
    out = caching.workloads(plain, pipe, cache, ["f"], {"clustering": {"threshold": 0.5}}, [0.4, 0.5, 0.6],
                            warmup="w", rounds=3)
    assert order[:8] == ["warm plain", "warm pipe", "plain", "clear", "pipe", "plain", "clear", "pipe"]
    table = out.table
    # cold: 2.0 s against 0.5, 1.0, 0.25 s, paired by round: 4x, 2x, 8x
    assert (table.loc[caching.COLD, "speed-up"], out.ratio(caching.COLD).low, out.ratio(caching.COLD).high) == (4.0, 2.0, 8.0)
    assert table.loc[caching.COLD, "hit rate"] == 0.75  # 3 hits of 4 lookups each round, across resets
    assert table.loc[caching.RECLUSTER, "rounds"] == 3 and sorted(out.der_by_threshold) == [0.4, 0.5, 0.6]
    assert table.loc[caching.GROWN, "uncached (s)"] == 4.0  # the half, then the whole file
    assert list(table.index) == [caching.COLD, caching.RERUN, caching.RECLUSTER, caching.GROWN, caching.DISK]
