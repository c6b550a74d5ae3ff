"""The ``optimized`` pipeline: the techniques that measurably helped on this CPU, composed.

Measured in the chapters, kept here:

- shared / block embedding trunk (fusion chapter): the CAM++ trunk runs once per 10 s of
  audio (``pipelines.trunks.BlockTrunkDiarization``) and each window's three speakers are pooled from it;
- a coarser segmentation step (2.5 s instead of 1 s): 4x fewer segmentation windows,
  and 4x fewer embeddings to cluster;
- ONNX Runtime fp32 for both networks (quantization chapter: the runtime mattered more than
  the number format; int8 and fp16 were slower on this CPU);
- segmentation batch 8 (batching chapter);
- for any length of audio: trunk frames computed block by block and dropped once pooled
  (``trunks.BlockFrames``), and the dendrogram built by fastcluster's memory-saving
  ``linkage_vector`` (``pipelines.clustering``; ``--param linkage=scipy`` restores scipy's, whose
  distance matrix grows with the square of the length).

Everything else — clustering's rules, aggregation — is pyannote's, unchanged. The clustering's
threshold and minimum cluster size are re-tuned for this pipeline on the tune split, as the
reference's were (``measure.tuning``, ``configs/reference.yaml``: ``optimized``): at a 2.5 s step a
speaker yields 2.5 times fewer embeddings, so the reference's minimum cluster size would stand for
2.5 times more speech. Band-limited input (telephone speech, 8 kHz audio resampled; chapter 90)
is clustered with values chosen for it on phone copies of the tune and dev splits
(``core.config.telephone_params``, ``BlockTrunkDiarization.set_band_clustering``).
Its DER is measured against the reference on the same files, never assumed.
"""
from __future__ import annotations

from ..core.config import optimized_params, telephone_params
from ..core.models import choose_embedding, load_segmentation
from ..portable.onnx import ort_segmentation, ort_trunk
from .clustering import use_vector_linkage
from .reference import pipeline_variant
from .registry import Variant
from .trunks import BlockTrunkDiarization, build_shared_trunk_pipeline, trunk_and_pool

OPTIMIZED = {"segmentation_step": 0.25, "segmentation_batch_size": 8, "runtime": "onnxruntime", "linkage": "vector"}


def build_optimized_pipeline(embedding="auto", segmentation_step: float = OPTIMIZED["segmentation_step"],
                             runtime: str = OPTIMIZED["runtime"], params=None, threads: int | None = None,
                             segmentation_model=None, embedding_model=None, linkage: str = OPTIMIZED["linkage"],
                             telephone: bool = True):
    """Block-trunk pipeline with a coarser step; ONNX Runtime for both networks if asked
    (``threads``: ONNX Runtime intra-op threads; default: one per physical core).

    ``segmentation_model`` (a ``PlainSegmentation``) and ``embedding_model`` (a
    ``CAMPPlusEmbedding``) replace the real networks, e.g. by pruned copies. ``params`` default to
    the clustering values tuned for this pipeline (``core.config.optimized_params``: the minimum
    cluster size in the same seconds of speech at any step). ``telephone``: band-limited input
    (telephone speech, 8 kHz audio resampled) is clustered with the values configured for it,
    when there are some (``core.config.telephone_params``, ``BlockTrunkDiarization.set_band_clustering``);
    not with explicit ``params``, which are used as given."""
    if runtime not in ("onnxruntime", "torch"):
        raise ValueError(f"runtime must be 'onnxruntime' or 'torch', got {runtime!r}")
    if linkage not in ("vector", "scipy"):
        raise ValueError(f"linkage must be 'vector' or 'scipy', got {linkage!r}")
    choice = choose_embedding(embedding) if isinstance(embedding, str) else embedding
    band = telephone_params(choice.name, segmentation_step) if telephone and params is None else None
    params = params or optimized_params(choice.name, segmentation_step)
    if runtime == "onnxruntime":  # exports go through portable.onnx's cache (no temporary folders)
        seg = segmentation_model if segmentation_model is not None else load_segmentation()
        seg_forward = ort_segmentation(seg, threads=threads)
    else:
        seg_forward = segmentation_model.forward if segmentation_model is not None else None
    # segmentation_forward goes to a copy of the model: other pipelines in the process keep theirs
    pipe = build_shared_trunk_pipeline(choice, chunk_batch=1, params=params, segmentation_step=segmentation_step,
                                       segmentation_batch_size=OPTIMIZED["segmentation_batch_size"],
                                       segmentation_forward=seg_forward, cls=BlockTrunkDiarization)
    pipe.runtime = "torch"
    model = embedding_model if embedding_model is not None else pipe._embedding.model_
    if embedding_model is not None:
        if not hasattr(model, "campplus") or pipe.embedding_choice.name != "campplus":
            raise ValueError("embedding_model replaces CAM++ only (the pipeline's embedding must be campplus)")
        pipe.set_trunk(*trunk_and_pool(model))
    if runtime == "onnxruntime":
        if hasattr(model, "campplus"):
            pipe.set_trunk(frames_fn=ort_trunk(model, threads=threads), pool_fn=model.campplus.pool_and_embed)
            pipe.runtime = "onnxruntime (segmentation + embedding trunk)"
        else:
            pipe.runtime = "onnxruntime (segmentation); torch (embedding trunk: no ONNX export wired for it)"
    if linkage == "vector":
        use_vector_linkage(pipe)
    if band is not None:
        pipe.set_band_clustering(band["clustering"], band["cuts"])
    return pipe


def optimized_variant(embedding: str = "auto", segmentation_step: float = OPTIMIZED["segmentation_step"],
                      runtime: str = OPTIMIZED["runtime"], threads: int | None = None,
                      linkage: str = OPTIMIZED["linkage"]) -> Variant:
    pipe = build_optimized_pipeline(embedding, float(segmentation_step), runtime,
                                    threads=int(threads) if threads is not None else None, linkage=linkage)
    desc = (f"block embedding trunk + segmentation step {10 * float(segmentation_step):g} s + batch "
            f"{OPTIMIZED['segmentation_batch_size']}; runtime: {pipe.runtime}; clustering threshold "
            f"{pipe.clustering.threshold:.3f}, min cluster size {pipe.clustering.min_cluster_size}, {linkage} linkage "
            f"({pipe.embedding_choice.name})")
    if band := pipe.band_clustering:
        desc += (f"; telephone-band input: threshold {band[0]['threshold']:g}, min cluster size "
                 f"{band[0]['min_cluster_size']}")
    return pipeline_variant("optimized", pipe, desc)


def build_block_trunk_pipeline(embedding="auto", segmentation_step: float = OPTIMIZED["segmentation_step"],
                               segmentation_forward=None):
    """The block trunk in torch (no ONNX Runtime) at a segmentation step, with ``optimized``'s
    clustering values at that step; ``segmentation_forward`` replaces the segmentation network's
    forward (``build_shared_trunk_pipeline``) and ``set_trunk`` the embedding trunk, e.g. by
    compressed weights (the quantization chapter's DER runs)."""
    choice = choose_embedding(embedding) if isinstance(embedding, str) else embedding
    return build_shared_trunk_pipeline(choice, chunk_batch=1, segmentation_step=segmentation_step,
                                       params=optimized_params(choice.name, segmentation_step),
                                       segmentation_batch_size=OPTIMIZED["segmentation_batch_size"],
                                       segmentation_forward=segmentation_forward, cls=BlockTrunkDiarization)


def block_trunk_variant(name: str, embedding: str = "auto", segmentation_step: float = OPTIMIZED["segmentation_step"]) -> Variant:
    """The block trunk in torch at a segmentation step: the steps between the shared trunk and
    ``optimized`` in chapter 90's ablation (with ``optimized``'s clustering values at that step, so
    that the ablation's last step changes the runtime, the linkage's implementation and, on
    telephone-band files only, the clustering values: ``core.config.telephone_params``)."""
    pipe = build_block_trunk_pipeline(embedding, segmentation_step)
    desc = (f"block embedding trunk (torch) + segmentation step {10 * float(segmentation_step):g} s + batch "
            f"{OPTIMIZED['segmentation_batch_size']} ({pipe.embedding_choice.name})")
    return pipeline_variant(name, pipe, desc)
