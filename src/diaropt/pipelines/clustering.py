"""Clustering that fits in memory at any length: pyannote's, with a memory-saving linkage.

pyannote's ``AgglomerativeClustering`` (the reference's and ``optimized``'s clustering) builds
its dendrogram with ``scipy.cluster.hierarchy.linkage`` on the unit-normalised embeddings, with
the centroid method. Given observation vectors, scipy first computes their condensed distance
matrix: n(n-1)/2 doubles. A 4-hour recording at ``optimized``'s 2.5 s step has about 5,800
chunks of up to 3 active speakers, some 17,000 embeddings: 1.2 GB for the matrix alone, growing
with the square of the length.

fastcluster (Müllner's library, from which scipy's own linkage code descends) offers
``linkage_vector`` for the centroid, median and Ward methods on Euclidean vectors: the same
dendrogram from the vectors themselves, in O(n·d) memory. ``VectorLinkageClustering`` is
pyannote's class with only that call swapped, inside its own ``cluster`` call (a context
variable that pyannote's module-level ``linkage`` name consults), so every other rule of
pyannote's clustering — the threshold, ``min_cluster_size`` and the re-assignment of small
clusters, the speaker-count constraints — is pyannote's code, unchanged. Other pipelines in the
same process keep scipy's linkage.

Floating-point order differs between the two implementations, so merge heights can differ in
the last bits. The tests check the labels and the dendrogram heights against scipy's on
synthetic speakers; ``optimized`` gave the same per-file DER on the whole test split with either
linkage (checked by hand, not by a chapter).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import pyannote.audio.pipelines.clustering as _pyannote_clustering
from pyannote.audio.pipelines.clustering import AgglomerativeClustering

_USE_VECTOR = ContextVar("diaropt_vector_linkage", default=False)
_SCIPY_LINKAGE = getattr(_pyannote_clustering.linkage, "scipy_linkage", _pyannote_clustering.linkage)
VECTOR_METHODS = ("centroid", "median", "ward")


def _linkage(y, method="single", metric="euclidean", optimal_ordering=False):
    """pyannote's ``linkage``: fastcluster's vector form inside ``vector_linkage()``, scipy's otherwise."""
    if _USE_VECTOR.get() and method in VECTOR_METHODS and metric == "euclidean" and getattr(y, "ndim", 1) == 2:
        import fastcluster
        import numpy as np

        return fastcluster.linkage_vector(np.asarray(y, dtype=np.float64), method=method, metric="euclidean")
    return _SCIPY_LINKAGE(y, method=method, metric=metric, optimal_ordering=optimal_ordering)


_linkage.scipy_linkage = _SCIPY_LINKAGE
_pyannote_clustering.linkage = _linkage  # consulted by AgglomerativeClustering.cluster at call time


@contextmanager
def vector_linkage():
    """Within the block, pyannote's agglomerative clustering uses fastcluster's ``linkage_vector``."""
    token = _USE_VECTOR.set(True)
    try:
        yield
    finally:
        _USE_VECTOR.reset(token)


class VectorLinkageClustering(AgglomerativeClustering):
    """pyannote's ``AgglomerativeClustering`` with the O(n·d)-memory linkage of fastcluster."""

    def cluster(self, embeddings, min_clusters, max_clusters, num_clusters=None):
        with vector_linkage():
            return super().cluster(embeddings, min_clusters, max_clusters, num_clusters=num_clusters)


def use_vector_linkage(pipe):
    """Make a built pyannote ``SpeakerDiarization`` cluster with ``VectorLinkageClustering``: its
    clustering object becomes an instance of the subclass, hyper-parameters and state untouched
    (the subclass adds none). Returns the pipeline."""
    clustering = pipe.clustering
    if not isinstance(clustering, AgglomerativeClustering):
        raise TypeError(f"vector linkage replaces AgglomerativeClustering, not {type(clustering).__name__}")
    clustering.__class__ = VectorLinkageClustering
    return pipe
