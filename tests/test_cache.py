"""The content-addressed cache (technique 6): hits, misses, eviction, invalidation, disk tier."""
import numpy as np
import pytest
import torch

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
    x = np.zeros(160000, np.float32)
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
