"""The compression chapters' DER harness (``measure.scoring.one_change_table``, through
``techniques.quantization.der_table`` and ``techniques.pruning.der_table``) on the real models:
the block trunk built from the integrated embedding module must be that module, the base trunk
frames must be computed once, and a change of one model must show in the DER."""
import copy

import torch

from diaropt.core import data
from diaropt.core.models import choose_embedding
from diaropt.measure import scoring
from diaropt.techniques import quantization as q


def test_memo_frames_compute_each_input_once():
    calls = []
    memo = scoring.MemoFrames(lambda w: calls.append(1) or w * 2)
    a, b = torch.ones(1, 1, 4), torch.zeros(1, 1, 4)
    assert torch.equal(memo(a), a * 2) and torch.equal(memo(a.clone()), a * 2) and torch.equal(memo(b), b)
    assert len(calls) == 2  # the same samples again: no second computation


def test_der_table_changes_one_model_at_a_time(provisioned, monkeypatch):
    rec = data.pyannote_sample()  # two speakers
    ref = q.reference(choose_embedding("campplus"), data.real_windows([rec], step=10.0, limit=2))
    with torch.inference_mode():  # the block trunk's halves are the integrated module
        frames, pool = q.block_trunk_of(ref.emb)
        torch.testing.assert_close(pool(frames(ref.windows), ref.masks), ref.embeddings, atol=1e-4, rtol=1e-4)

    class Silent(torch.nn.Module):  # segmentation that hears no speech anywhere
        def forward(self, x):
            out = torch.full((x.shape[0], 589, 7), -1e4)
            out[..., 0] = 0.0
            return out

    seg_calls, memos = [], []
    plain_forward = type(ref.seg).forward

    def counted_forward(self, x):
        seg_calls.append(id(self))
        return plain_forward(self, x)

    class CountingMemo(scoring.MemoFrames):
        def __init__(self, frames):
            self.computed = 0

            def counted(w):
                self.computed += 1
                return frames(w)
            super().__init__(counted)
            memos.append(self)

    monkeypatch.setattr(type(ref.seg), "forward", counted_forward)
    monkeypatch.setattr(scoring, "MemoFrames", CountingMemo)
    same_seg = copy.deepcopy(ref.seg)  # the same weights in another module: the outputs must be identical
    flat = copy.deepcopy(ref.emb)  # every speaker gets the same embedding: one cluster
    flat.campplus.dense.linear.weight.data.zero_()
    table, base = q.der_table("campplus", [rec], ref, {"same": same_seg, "silent": Silent()},
                              {"same": ref.emb, "flat": flat}, ["same", "silent"], ["same", "flat"], progress=False)
    d = table["Δ strict (pts)"]
    assert d[("none (fp32)", "fp32")] == 0.0 and base["der_strict"] < 0.3
    assert d[("segmentation", "same")] == 0.0 and d[("embedding", "same")] == 0.0
    assert d[("segmentation", "silent")] > 50  # all speech missed
    assert d[("embedding", "flat")] > 10  # two speakers merged
    # fp32 segmented once (the embedding variants reused it), as often as the copy did in its run
    assert seg_calls.count(id(ref.seg)) == seg_calls.count(id(same_seg)) > 0
    # the fp32 trunk: each block computed once for fp32 and the segmentation variants together
    (memo,) = memos
    assert memo.computed == len(memo.store) > 0
