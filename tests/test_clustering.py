"""``pipelines.clustering``: fastcluster's memory-saving linkage gives pyannote's clusters, and only
where it is asked for."""
import numpy as np
import pytest
from pyannote.audio.pipelines.clustering import AgglomerativeClustering

from diaropt.pipelines import clustering as vc


def _clustering(cls, threshold=0.6, min_cluster_size=3):
    c = cls(metric="cosine")
    c.instantiate({"threshold": threshold, "method": "centroid", "min_cluster_size": min_cluster_size})
    return c


def _speakers(n_speakers=4, per=60, dim=192, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_speakers, dim))
    return np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centres]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vector_linkage_gives_pyannotes_clusters(seed):
    x = _speakers(seed=seed)
    ref = _clustering(AgglomerativeClustering).cluster(x.copy(), 1, len(x))
    got = _clustering(vc.VectorLinkageClustering).cluster(x.copy(), 1, len(x))
    assert len(np.unique(ref)) == 4
    assert np.array_equal(ref, got)


def test_vector_linkage_honours_a_speaker_count_like_pyannote():
    x = _speakers(n_speakers=3, seed=3)
    ref = _clustering(AgglomerativeClustering).cluster(x.copy(), 2, 2, num_clusters=2)
    got = _clustering(vc.VectorLinkageClustering).cluster(x.copy(), 2, 2, num_clusters=2)
    assert np.array_equal(ref, got) and len(np.unique(got)) == 2


def test_the_dendrograms_agree_and_scipy_stays_the_default(monkeypatch):
    import fastcluster

    x = _speakers(per=20)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scipy_tree = vc._pyannote_clustering.linkage(x, method="centroid", metric="euclidean")
    with vc.vector_linkage():
        vector_tree = vc._pyannote_clustering.linkage(x, method="centroid", metric="euclidean")
    np.testing.assert_allclose(vector_tree[:, 2], scipy_tree[:, 2], rtol=1e-9, atol=1e-12)
    assert np.array_equal(vector_tree[:, 3], scipy_tree[:, 3])

    def no_vector(*a, **k):
        raise AssertionError("fastcluster used outside vector_linkage()")

    monkeypatch.setattr(fastcluster, "linkage_vector", no_vector)
    _clustering(AgglomerativeClustering).cluster(_speakers(), 1, 240)  # plain pyannote: scipy


def test_use_vector_linkage_keeps_the_hyper_parameters():
    class Pipe:
        clustering = _clustering(AgglomerativeClustering, threshold=0.71, min_cluster_size=7)

    pipe = vc.use_vector_linkage(Pipe())
    assert isinstance(pipe.clustering, vc.VectorLinkageClustering)
    assert pipe.clustering.threshold == 0.71 and pipe.clustering.min_cluster_size == 7
