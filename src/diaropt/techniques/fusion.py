"""Chapter 01, operation fusion.

Three levels, each checked for equality with the reference:

1. **Powerset decode** (the guide's snippet): reshape -> softmax -> argmax -> one-hot -> matmul
   with the 7x3 mapping. Softmax is monotonic, so argmax of the log-probabilities already gives
   the class; one-hot + matmul is a row lookup. ``decode_fused`` = ``mapping[argmax]``.
2. **Model-level**: SincNet filters baked (``diaropt.portable.plain``), BatchNorm folded into the
   preceding convolution (``fold_campplus_batchnorm``, torch's ``fuse_conv_bn_eval``),
   TorchScript freeze, ``torch.compile``.
3. **Shared embedding trunk** (``diaropt.pipelines.trunks``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..portable.plain import PlainSegmentation


def powerset():
    """pyannote's own powerset converter for segmentation-3.0 (3 speakers, at most 2 at once)."""
    from pyannote.audio.utils.powerset import Powerset

    return Powerset(3, 2)


def decode_pyannote(log_probs: torch.Tensor) -> torch.Tensor:
    """Reference: pyannote's ``Powerset.to_multilabel`` (hard)."""
    return powerset().to_multilabel(log_probs)


def decode_guide(log_probs: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """The guide's chain, made to run: any batch size instead of ``view(1, 589, 7)``."""
    probs = F.softmax(log_probs, dim=-1)
    indices = torch.argmax(probs, dim=-1)
    one_hot = F.one_hot(indices, mapping.shape[0]).float()
    return torch.matmul(one_hot, mapping)


def decode_fused(log_probs: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """argmax + row lookup: no softmax, no one-hot, no matmul."""
    return mapping[log_probs.argmax(dim=-1)]


class FusedSegmentation(nn.Module):
    """segmentation-3.0 with the powerset decode inside: waveform -> (B, 589, 3) binary masks.

    The guide decorates a method of a plain ``nn.Module`` with ``@torch.jit.script_method``,
    which only exists on ``torch.jit.ScriptModule``; here the whole module is scriptable/traceable.
    """

    def __init__(self, pyannote_model):
        super().__init__()
        self.base = PlainSegmentation(pyannote_model)
        self.register_buffer("mapping", powerset().mapping.clone())

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return decode_fused(self.base(waveforms), self.mapping)


def _fold(conv: nn.Conv1d | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    if not bn.affine:  # fuse_conv_bn_eval needs weight/bias: use the identity affine
        bn = _with_identity_affine(bn)
    return fuse_conv_bn_eval(conv, bn)


def _with_identity_affine(bn):
    new = type(bn)(bn.num_features, eps=bn.eps, affine=True)
    new.running_mean.copy_(bn.running_mean)
    new.running_var.copy_(bn.running_var)
    return new.eval()


def fold_campplus_batchnorm(campplus) -> int:
    """Fold every BatchNorm that directly follows a convolution into it (in place, eval mode).

    Pre-activation BatchNorms (BN -> ReLU -> conv) cannot be folded and are left alone.
    Returns the number of folded pairs.
    """
    from ..core.campplus import FCM, BasicResBlock, CAMDenseTDNNLayer, TDNNLayer

    campplus.eval()
    folded = 0
    for module in campplus.modules():
        pairs = []
        if isinstance(module, FCM):
            pairs = [("conv1", "bn1"), ("conv2", "bn2")]
        elif isinstance(module, BasicResBlock):
            pairs = [("conv1", "bn1"), ("conv2", "bn2")]
            if len(module.shortcut):
                module.shortcut = nn.Sequential(_fold(module.shortcut[0], module.shortcut[1]))
                folded += 1
        for conv_name, bn_name in pairs:
            setattr(module, conv_name, _fold(getattr(module, conv_name), getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
            folded += 1
        if isinstance(module, TDNNLayer):
            module.linear = _fold(module.linear, module.nonlinear.batchnorm)
            module.nonlinear.batchnorm = nn.Identity()
            folded += 1
        if isinstance(module, CAMDenseTDNNLayer):
            module.linear1 = _fold(module.linear1, module.nonlinear2.batchnorm)
            module.nonlinear2.batchnorm = nn.Identity()
            folded += 1
    # the last transition's conv feeds only the output BatchNorm
    last = campplus.xvector.transit3
    last.linear = _fold(last.linear, campplus.xvector.out_nonlinear.batchnorm)
    campplus.xvector.out_nonlinear.batchnorm = nn.Identity()
    dense = campplus.dense
    dense.linear = _fold(dense.linear, dense.nonlinear.batchnorm)
    dense.nonlinear.batchnorm = nn.Identity()
    return folded + 2


def freeze_torchscript(module: nn.Module, example: torch.Tensor, optimize: bool = False):
    """Trace, freeze (constant-folds weights, folds conv+BN) and optionally
    ``optimize_for_inference`` (oneDNN layouts)."""
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        return torch.jit.optimize_for_inference(frozen) if optimize else frozen
