"""Chapter 09, pruning: the guide's zero-writing version, and structural pruning that removes
channels and LSTM units for real, with a short knowledge-distillation recovery.

- ``guide_prune_model`` is the guide's snippet (its missing ``import torch.nn as nn`` added):
  ``prune.ln_structured`` + ``prune.remove`` write zeros into 30 % of each Linear/Conv's output
  rows; every tensor keeps its shape, so the stored model and its arithmetic do not shrink.
- segmentation-3.0 (PyanNet) spends most of its parameters and FLOPs in a 4-layer bidirectional
  LSTM. torch-pruning 1.6.1's ``LSTMPruner`` asserts ``num_layers == 1`` (and slices
  ``weight_hh`` along one axis only), so the LSTM is pruned here by surgery: a unit of layer
  ``l`` / direction ``d`` loses its four gate rows in ``weight_ih``/``weight_hh``/biases, its
  column in ``weight_hh`` and its input column in layer ``l + 1`` (or the first Linear).
  ``segmentation_keep`` chooses the units (L2 norm of their incoming weights);
  ``prune_segmentation`` builds the smaller model and ``zero_segmentation`` the same selection
  as zeros: a unit whose incoming weights and biases are zero outputs exactly 0, so the two
  must agree (a test).
- CAM++ is convolutional with dense concatenations: torch-pruning's dependency graph handles
  it (``prune_campplus``); the 192-d embedding layer keeps its outputs.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..measure.cost import parameter_count, sizes_mb  # noqa: F401  (the chapter's size table)

# ------------------------------------------------------------------------------------------
# the guide's snippet, and what it leaves behind


GUIDE_SNIPPET = """\
import torch.nn.utils.prune as prune

def prune_model(model, sparsity=0.3):
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            # Structured pruning (remove entire channels)
            prune.ln_structured(
                module,
                name='weight',
                amount=sparsity,
                n=2,
                dim=0
            )
            # Make pruning permanent
            prune.remove(module, 'weight')

    return model
"""


def run_guide_snippet(model: nn.Module, sparsity: float = 0.3, fix_import: bool = True) -> nn.Module:
    """Execute the guide's snippet (its code, docstring dropped) on ``model`` in place.

    As written (``fix_import=False``) it raises ``NameError``: ``nn`` is never imported."""
    namespace = {"nn": nn} if fix_import else {}
    exec(compile(GUIDE_SNIPPET, "<guide: prune_model>", "exec"), namespace)  # noqa: S102 - the snippet under test
    return namespace["prune_model"](model, sparsity=sparsity)


def guide_prune_model(model: nn.Module, sparsity: float = 0.3) -> nn.Module:
    """The guide's ``prune_model`` with the missing ``import torch.nn as nn`` (in place)."""
    return run_guide_snippet(model, sparsity, fix_import=True)


def zero_fraction(module: nn.Module) -> float:
    """Fraction of parameter values that are exactly zero."""
    total = parameter_count(module)
    return sum(int((p == 0).sum()) for p in module.parameters()) / max(total, 1)


# ------------------------------------------------------------------------------------------
# segmentation-3.0: LSTM units and Linear units


def _gate_rows(keep: torch.Tensor, hidden: int) -> torch.Tensor:
    return torch.cat([keep + g * hidden for g in range(4)])


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, keep).indices).values


def n_keep(width: int, ratio: float) -> int:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    return max(1, round(width * (1.0 - ratio)))


def segmentation_keep(plain, ratio: float) -> dict:
    """Units kept per LSTM layer/direction and per hidden Linear (largest incoming L2 norm)."""
    lstm = plain.lstm
    hidden, dirs = lstm.hidden_size, 2 if lstm.bidirectional else 1
    k = n_keep(hidden, ratio)
    units = []
    for layer in range(lstm.num_layers):
        per_dir = []
        for d in range(dirs):
            w_ih = getattr(lstm, "weight_ih" + _suffix(layer, d)).detach()
            w_hh = getattr(lstm, "weight_hh" + _suffix(layer, d)).detach()
            rows = torch.cat([w_ih, w_hh], dim=1).reshape(4, hidden, -1)  # (gate, unit, inputs)
            per_dir.append(_top(rows.pow(2).sum(dim=(0, 2)).sqrt(), k))
        units.append(per_dir)
    linear = [_top(torch.cat([lin.weight, lin.bias[:, None]], 1).detach().norm(dim=1), n_keep(lin.out_features, ratio))
              for lin in plain.linear]
    return {"lstm": units, "linear": linear}


def _lstm_input_columns(units: list, layer: int, hidden: int) -> torch.Tensor:
    return torch.cat([idx + d * hidden for d, idx in enumerate(units[layer - 1])])


def _sliced_linear(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    w = lin.weight.detach()
    b = lin.bias.detach() if lin.bias is not None else None
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    out.weight.data.copy_(w)
    if b is not None:
        out.bias.data.copy_(b)
    return out


def prune_segmentation(plain, keep: dict):
    """A physically smaller copy of a ``PlainSegmentation`` keeping the units in ``keep``."""
    lstm = plain.lstm
    hidden, dirs, units = lstm.hidden_size, 2 if lstm.bidirectional else 1, keep["lstm"]
    new = nn.LSTM(lstm.input_size, len(units[0][0]), lstm.num_layers, bias=lstm.bias, batch_first=lstm.batch_first,
                  bidirectional=lstm.bidirectional, dropout=lstm.dropout)
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            cols = None if layer == 0 else _lstm_input_columns(units, layer, hidden)
            for d in range(dirs):
                sfx, idx = _suffix(layer, d), units[layer][d]
                rows = _gate_rows(idx, hidden)
                w_ih = getattr(lstm, "weight_ih" + sfx)[rows]
                getattr(new, "weight_ih" + sfx).copy_(w_ih if cols is None else w_ih[:, cols])
                getattr(new, "weight_hh" + sfx).copy_(getattr(lstm, "weight_hh" + sfx)[rows][:, idx])
                if lstm.bias:
                    getattr(new, "bias_ih" + sfx).copy_(getattr(lstm, "bias_ih" + sfx)[rows])
                    getattr(new, "bias_hh" + sfx).copy_(getattr(lstm, "bias_hh" + sfx)[rows])
    out = copy.deepcopy(plain)
    out.lstm = new
    cols = _lstm_input_columns(units, lstm.num_layers, hidden)
    linear = []
    for lin, rows in zip(plain.linear, keep["linear"]):
        linear.append(_sliced_linear(lin, rows, cols))
        cols = rows
    out.linear = nn.ModuleList(linear)
    out.classifier = _sliced_linear(plain.classifier, None, cols)
    return out.eval()


def zero_segmentation(plain, keep: dict):
    """The same selection as zeros (incoming weights and biases of the removed units)."""
    out = copy.deepcopy(plain)
    lstm = out.lstm
    hidden, dirs = lstm.hidden_size, 2 if lstm.bidirectional else 1
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            for d in range(dirs):
                drop = torch.ones(hidden, dtype=torch.bool)
                drop[keep["lstm"][layer][d]] = False
                rows = _gate_rows(torch.nonzero(drop).flatten(), hidden)
                for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
                    getattr(lstm, name + _suffix(layer, d))[rows] = 0.0
        for lin, kept in zip(out.linear, keep["linear"]):
            drop = torch.ones(lin.out_features, dtype=torch.bool)
            drop[kept] = False
            lin.weight[drop] = 0.0
            lin.bias[drop] = 0.0
    return out.eval()


# ------------------------------------------------------------------------------------------
# CAM++: torch-pruning's dependency graph


def prune_campplus(campplus_embedding, ratio: float, frames: int = 998):
    """A copy of a ``CAMPPlusEmbedding`` with ``ratio`` of the channels of every prunable group
    removed (torch-pruning, L2 magnitude of each group); the embedding layer keeps its 192 outputs."""
    import torch_pruning as tp

    out = copy.deepcopy(campplus_embedding).eval()
    if ratio == 0:
        return out
    n_keep(2, ratio)  # validates the ratio
    cp = out.campplus
    with torch.inference_mode(False), torch.enable_grad():  # the dependency graph is traced by autograd
        example = torch.randn(1, frames, 80)
        pruner = tp.pruner.BasePruner(cp, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=[cp.dense.linear])
        pruner.step()
    cp.channels = cp.dense.linear.in_channels // 2
    return out.eval()


# ------------------------------------------------------------------------------------------
# knowledge distillation on unlabelled audio


def distill(student: nn.Module, teacher_out: torch.Tensor, inputs: torch.Tensor, loss_fn, *, steps: int,
            batch: int = 8, lr: float = 1e-3, seed: int = 0, desc: str = "distil") -> dict:
    """Fit ``student(inputs[i])`` to the teacher's precomputed outputs with Adam.

    The student stays in eval mode (no dropout, frozen BatchNorm statistics); every parameter
    is trained. Returns the loss per step and the wall time."""
    gen = torch.Generator().manual_seed(seed)
    student.eval()
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    losses, t0 = [], time.perf_counter()
    for _ in tqdm(range(steps), desc=desc, leave=False):
        idx = torch.randint(len(inputs), (batch,), generator=gen)
        loss = loss_fn(student(inputs[idx]), teacher_out[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for p in params:
        p.requires_grad_(False)
    return {"losses": losses, "seconds": time.perf_counter() - t0, "steps": steps, "batch": batch, "lr": lr}


def powerset_kl(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per frame over the 7 powerset classes, averaged."""
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="none").sum(-1).mean()


def cosine_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(student_emb, teacher_emb, dim=-1)).mean()
