"""A WeSpeaker ResNet34 checkpoint with random weights, for plumbing tests only.

It has the architecture of ``pyannote/wespeaker-voxceleb-resnet34-LM`` (pyannote.audio's
``WeSpeakerResNet34``) and is written in the checkpoint layout ``Model.from_pretrained`` reads
from a local ``pytorch_model.bin``, so ``DIAROPT_RESNET34=<path>`` exercises the book's real
ResNet34 loading path without the hub. Random weights give meaningless embeddings: nothing
computed with this file is ever a published number (the tests send results to a temporary
folder).

Run ``python tests/resnet34_random.py [PATH]`` to write it (default
``/tmp/resnet34-random/pytorch_model.bin``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

DEFAULT_PATH = Path("/tmp/resnet34-random/pytorch_model.bin")
SEED = 0
# A chunk-level speaker representation, as pyannote's speaker-embedding checkpoints declare.
DURATION = 10.0


def random_resnet34(seed: int = SEED):
    """A ``WeSpeakerResNet34`` with deterministic random weights (eval mode)."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(seed)
    model = WeSpeakerResNet34()
    with torch.no_grad():  # BatchNorm running statistics are not random by default: make them so
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                          duration=DURATION)
    return model.eval()


def write_random_resnet34(path: Path | str = DEFAULT_PATH, seed: int = SEED) -> Path:
    """Write the random checkpoint to ``path`` (creating its folder) and return ``path``.

    The dict is what Lightning's ``ModelCheckpoint`` plus pyannote's ``on_save_checkpoint``
    store: ``state_dict``, ``hyper_parameters`` and the ``pyannote.audio`` block (version,
    architecture class path, specifications).
    """
    import lightning
    from pyannote.audio import __version__ as pyannote_version

    from diaropt.core.models import RANDOM_WEIGHTS_KEY

    model = random_resnet34(seed)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        # marks the file as random weights: every record made with it says so (diaropt.core.models)
        RANDOM_WEIGHTS_KEY: {"seed": seed, "purpose": "plumbing tests only; never a published number"},
        "pyannote.audio": {
            "versions": {"pyannote.audio": pyannote_version},
            "architecture": {"module": type(model).__module__, "class": type(model).__name__},
            "specifications": model.specifications,
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(write_random_resnet34(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH))
