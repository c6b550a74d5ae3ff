"""Chapter 10, ensembles: of embedding models, and of shifted segmentation windows.

- ``GuideEnsembleDiarizationModel`` is the guide's snippet as written: ``self.ensemble_weights``
  is never defined, so ``forward`` raises ``AttributeError``. ``WeightedEnsemble`` is the fix
  (a learnable ``nn.Parameter``, uniform at initialisation) and, unlike the snippet, mixes
  *probabilities*: averaging log-probabilities is a geometric mean that no longer sums to one.
  It only makes sense for members with the same output space.
- Two speaker-embedding models do not share a space (CAM++ is 192-d, GE2E 256-d), so their
  outputs cannot be averaged. What can be combined are their *scores*: ``fuse_embeddings``
  concatenates the L2-normalised embeddings scaled by ``sqrt(w_i)`` (weights summing to one),
  whose cosine similarity is exactly ``sum_i w_i cos_i`` (score fusion; a test).
- ``GE2EChunkEmbedding`` runs Resemblyzer's GE2E encoder on one pyannote chunk per local speaker:
  the mel frames where the speaker's mask is on, cut into 1.6 s partials (Resemblyzer's own
  recipe, without overlap), embedded and averaged.
- ``EnsembleDiarization`` computes each member's embeddings once per file (cached in the file
  dict, like pyannote's training cache) and fuses them with the current weights, so thresholds
  and weights can be swept by re-clustering only.

The chapter's measurements: ``build_members`` makes the members, with the chosen embedding model
(CAM++, or WeSpeaker ResNet34 when its weights are supplied) first, GE2E second and the other of
CAM++ / ResNet34 third when it is at hand; ``fusion_configs`` names the weightings of the first
member against the others; ``threshold_sweep`` gives each its clustering threshold on the
realistic tune split and ``tuned_table`` scores the tuned configurations on the whole realistic
test split with their measured cost and the paired bootstrap CI of each DER change;
``tta_table`` does the same for segmentation test-time augmentation. DER over a set goes through
``diaropt.measure.scoring.score``.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..book.verdicts import MINOR_GAIN
from ..measure.scoring import score
from ..pipelines.trunks import (
    SharedTrunkDiarization,
    build_shared_trunk_pipeline,
    embed_active_chunks,
    embedding_masks,
    trunk_and_pool,
)

STEP = 0.5  # segmentation step, as a fraction of the 10 s window (5 s): every configuration shares it
BATCH = 8  # segmentation and embedding batch (chunks)
SETTINGS = {
    # thresholds: the clustering thresholds swept on the tune split for every configuration;
    # base_weights: the weights of the first member (the chosen embedding model) against the others
    "full": {"thresholds": list(np.round(np.arange(0.30, 1.31, 0.05), 2)), "base_weights": [1.0, 0.75, 0.5, 0.25, 0.0]},
    "smoke": {"thresholds": [0.5, 0.7, 0.9], "base_weights": [1.0, 0.5, 0.0]},
}
# Segmentation TTA: the window advanced by fractions of the 270-sample frame hop.
TTA_SETS = {"1 member (no TTA)": [0], "2 members (0, 135)": [0, 135], "3 members (0, 90, 180)": [0, 90, 180]}
MODEL_LABELS = {"campplus": "CAM++", "resnet34": "ResNet34"}


class GuideEnsembleDiarizationModel(nn.Module):
    """The guide's snippet, verbatim (``F`` imported): ``ensemble_weights`` is never defined."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, audio):
        outputs = [model(audio) for model in self.models]
        weights = F.softmax(self.ensemble_weights, dim=0)
        output = sum(w * out for w, out in zip(weights, outputs))
        return output


class WeightedEnsemble(nn.Module):
    """Members with the same log-probability outputs, mixed in probability space:
    ``log(sum_i softmax(ensemble_weights)_i * exp(out_i))``."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.ensemble_weights = nn.Parameter(torch.zeros(len(models)))

    def forward(self, audio):
        outputs = torch.stack([model(audio) for model in self.models])  # (M, ...)
        log_w = F.log_softmax(self.ensemble_weights, dim=0).reshape(-1, *[1] * (outputs.dim() - 1))
        return torch.logsumexp(log_w + outputs, dim=0)


class ShiftedInput(nn.Module):
    """Run ``module`` on the window advanced by ``shift`` samples (zero-padded at the end):
    one member of a test-time-augmentation ensemble over shifted windows."""

    def __init__(self, module: nn.Module, shift: int):
        super().__init__()
        self.module, self.shift = module, int(shift)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if self.shift == 0:
            return self.module(waveforms)
        shifted = F.pad(waveforms[..., self.shift:], (0, self.shift))
        return self.module(shifted)


def shifted_tta(module: nn.Module, shifts: list[int]) -> WeightedEnsemble:
    """Test-time augmentation: the uniform probability mix of ``module`` over input shifts."""
    return WeightedEnsemble([ShiftedInput(module, s) for s in shifts]).eval()


def fuse_embeddings(embeddings: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Score fusion as one embedding: concat of ``sqrt(w_i) * e_i / |e_i|`` (weights sum to 1).

    The cosine similarity of two fused vectors is ``sum_i w_i * cos_i``; NaN (inactive
    speakers) propagate."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(embeddings) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"need one non-negative weight per member, summing to 1; got {weights}")
    parts = []
    for e, wi in zip(embeddings, w):
        norm = np.linalg.norm(e, axis=-1, keepdims=True)
        parts.append(np.sqrt(wi) * e / norm)
    return np.concatenate(parts, axis=-1).astype(np.float32)


class GE2EChunkEmbedding:
    """Resemblyzer's GE2E encoder on pyannote chunks: (B, 1, N), masks (B, S, F) -> (B, S, 256).

    Per chunk: volume-normalised as Resemblyzer does (-30 dBFS, increase only), 40-band mel
    (Resemblyzer's librosa front end), mask resampled to the mel frame rate by nearest
    neighbour; the speaker's active frames are cut into 160-frame partials (a shorter remainder
    of at least ``min_frames`` is kept), embedded in one packed LSTM batch and averaged."""

    partial_frames = 160

    def __init__(self, encoder, min_frames: int = 40):
        self.encoder, self.min_frames = encoder, min_frames
        self.dimension = encoder.linear.out_features
        self.seconds = 0.0

    def _mel(self, wav: np.ndarray) -> np.ndarray:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram
        from resemblyzer.hparams import audio_norm_target_dBFS

        return wav_to_mel_spectrogram(normalize_volume(wav, audio_norm_target_dBFS, increase_only=True))

    def partials(self, mel: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        idx = np.floor(np.arange(len(mel)) * (len(mask) / len(mel))).astype(int).clip(max=len(mask) - 1)
        active = mel[mask[idx] > 0.5]
        n, p = len(active), self.partial_frames
        if n < self.min_frames:
            return []
        if n <= p:
            return [active]
        cuts = [active[s: s + p] for s in range(0, n - p + 1, p)]
        if n % p >= self.min_frames:
            cuts.append(active[n - p:])  # the remainder, as a full partial ending at the last frame
        return cuts

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        b, s = masks.shape[:2]
        out = torch.zeros(b, s, self.dimension)
        seqs, owner = [], []
        for i in range(b):
            mel = self._mel(waveforms[i, 0].numpy().astype(np.float32))
            for j in range(s):
                for part in self.partials(mel, masks[i, j].numpy()):
                    seqs.append(torch.from_numpy(np.ascontiguousarray(part)))
                    owner.append((i, j))
        if seqs:
            for group in self._groups(seqs):
                for k, e in zip(group, self._embed([seqs[k] for k in group])):
                    i, j = owner[k]
                    out[i, j] += e
        out = F.normalize(out, dim=-1)
        out[out.norm(dim=-1) == 0] = float("nan")  # no partial: no embedding
        self.seconds += time.perf_counter() - t0
        return out


    def _groups(self, seqs: list[torch.Tensor]) -> list[list[int]]:
        """Full-length partials in one dense batch, shorter ones in one packed batch."""
        full = [k for k, q in enumerate(seqs) if len(q) == self.partial_frames]
        rest = [k for k, q in enumerate(seqs) if len(q) != self.partial_frames]
        return [g for g in (full, rest) if g]

    def _embed(self, seqs: list[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            if all(len(q) == len(seqs[0]) for q in seqs):
                batch = torch.stack(seqs)
            else:
                batch = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
            _, (hidden, _) = self.encoder.lstm(batch)
            return F.normalize(self.encoder.relu(self.encoder.linear(hidden[-1])), dim=-1)


class EnsembleDiarization(SharedTrunkDiarization):
    """pyannote's pipeline whose embeddings fuse several models' (cached per file).

    ``members``: {name: (fn(waveforms (B, 1, N), masks (B, S, F)) -> (B, S, D), D)};
    ``weights``: {name: weight} (summing to 1; members with weight 0 are not computed)."""

    CACHE = "diaropt/ensemble"

    def set_members(self, members: dict, weights: dict) -> None:
        self.__dict__["_members"] = dict(members)
        self.set_weights(weights)

    def set_weights(self, weights: dict) -> None:
        unknown = set(weights) - set(self.__dict__["_members"])
        if unknown:
            raise ValueError(f"no member named {sorted(unknown)}")
        self.__dict__["_weights"] = {k: float(v) for k, v in weights.items() if v > 0}

    def member_embeddings(self, file, name: str, masks: np.ndarray, window) -> np.ndarray:
        cache = file.setdefault(self.CACHE, {})
        if name not in cache:
            (fn, dim), t0 = self.__dict__["_members"][name], time.perf_counter()

            def embed(idx):
                wav = torch.stack([self._audio.crop(file, window[c], mode="pad")[0] for c in idx])
                return fn(wav, torch.from_numpy(masks[idx]))

            with torch.inference_mode():
                cache[name] = embed_active_chunks(masks, dim, True, self.chunk_batch, embed)
            cache[f"{name} seconds"] = time.perf_counter() - t0
        return cache[name]

    def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
        masks = embedding_masks(self, binary_segmentations, exclude_overlap)
        window = binary_segmentations.sliding_window
        weights = self.__dict__["_weights"]
        embs = [self.member_embeddings(file, name, masks, window) for name in weights]
        return fuse_embeddings(embs, list(weights.values()))


def embedding_seconds(files: list[dict], name: str) -> float:
    """Wall seconds member ``name`` spent embedding the given (cached) files."""
    return sum(f[EnsembleDiarization.CACHE][f"{name} seconds"] for f in files)


# ---- the chapter's measurements --------------------------------------------------------------

def model_member(name: str, model, folder) -> tuple:
    """``(fn(waveforms, masks) -> (B, S, D), D)`` of an embedding model: CAM++ through its ONNX
    Runtime trunk (``portable.onnx.ort_trunk``, exported into ``folder``), any other model through
    its torch trunk and pooling (``trunk_and_pool``)."""
    if name == "campplus":
        from ..portable.onnx import ort_trunk

        trunk = ort_trunk(model, folder)
        return (lambda w, m: model.campplus.pool_and_embed(trunk(w), m), model.dimension)
    frames_of, pool = trunk_and_pool(model)
    return (lambda w, m: pool(frames_of(w), m), model.dimension)


def build_members(choice, folder, ge2e_chunk: GE2EChunkEmbedding, campplus=None) -> tuple[dict, str]:
    """The embedding members, ``{label: (fn, dim)}``, and a note on ResNet34.

    First the chosen embedding model (``choice``, a ``core.models.EmbeddingChoice``), then GE2E,
    then the other of CAM++ / ResNet34 when it is at hand (CAM++ always is; ``campplus`` reuses
    an already loaded CAM++)."""
    from ..core.models import load_campplus, load_resnet34, resnet34_available

    members = {MODEL_LABELS[choice.name]: model_member(choice.name, choice.model, folder),
               "GE2E": (ge2e_chunk, ge2e_chunk.dimension)}
    if choice.name == "campplus":
        if resnet34_available():
            members["ResNet34"] = model_member("resnet34", load_resnet34(), folder)
            return members, "WeSpeaker ResNet34: included"
        return members, "WeSpeaker ResNet34: weights not present offline, not included"
    members["CAM++"] = model_member("campplus", campplus if campplus is not None else load_campplus(), folder)
    return members, "WeSpeaker ResNet34: included, as the chosen embedding model (the first member)"


def ensemble_pipeline(embedding: str, segmentation_forward, members: dict, weights: dict) -> EnsembleDiarization:
    """pyannote's pipeline (frozen parameters of ``embedding``, step ``STEP``) with the given
    segmentation forward and fused embedding members."""
    pipe = build_shared_trunk_pipeline(embedding, segmentation_step=STEP, segmentation_batch_size=BATCH,
                                       chunk_batch=BATCH, segmentation_forward=segmentation_forward,
                                       cls=EnsembleDiarization)
    pipe.set_members(members, weights)
    return pipe


def embed_splits(pipe: EnsembleDiarization, splits: dict[str, list[dict]]) -> dict[str, float]:
    """Run ``pipe`` once over every pyannote file of each split, filling the per-file caches
    (segmentation and every member's embeddings): wall seconds per split."""
    wall = {}
    for split, files in splits.items():
        t0 = time.perf_counter()
        for f in tqdm(files, desc=f"embed {split}"):
            pipe(f)
        wall[split] = time.perf_counter() - t0
    return wall


def others_label(members, base: str) -> str:
    """The members other than ``base``, as one label ("GE2E", "GE2E+ResNet34")."""
    return "+".join(n for n in members if n != base)


def fusion_configs(members, base: str, base_weights) -> dict[str, dict]:
    """``{label: weights}``: ``base`` at each weight ``w``, the others sharing ``1 - w`` equally
    ("CAM++ alone", "CAM++ 0.75 / GE2E 0.25", "GE2E alone")."""
    others = [n for n in members if n != base]
    label = others_label(members, base)
    configs = {}
    for w in base_weights:
        name = f"{base} {w:.2f} / {label} {1 - w:.2f}" if 0 < w < 1 else (f"{base} alone" if w == 1 else f"{label} alone")
        configs[name] = {base: w, **{n: (1 - w) / len(others) for n in others}}
    return configs


def split_scores(pipe: EnsembleDiarization, files: list[dict], recs, weights: dict, threshold: float) -> dict:
    """``measure.scoring.score`` of ``pipe`` with ``weights`` and clustering ``threshold`` over a
    split (re-clustering only: the files carry the cached segmentation and embeddings)."""
    pipe.set_weights(weights)
    pipe.clustering.threshold = float(threshold)
    return score(recs, [pipe(f).speaker_diarization for f in files])


def threshold_sweep(pipe: EnsembleDiarization, files: list[dict], recs, configs: dict, thresholds):
    """Strict DER (%) on the tune split of every (configuration, threshold): a DataFrame with
    columns config, threshold, tune DER strict (%)."""
    import pandas as pd

    rows = []
    for label, weights in tqdm(configs.items(), desc="threshold sweeps (tune)"):
        for th in thresholds:
            rows.append({"config": label, "threshold": th,
                         "tune DER strict (%)": 100 * split_scores(pipe, files, recs, weights, th)["totals"]["der_strict"]})
    return pd.DataFrame(rows)


def _changes(runs: dict, first: str):
    """The DER change of every run against run ``first`` (``measure.stats.change_columns``), one
    row per run label."""
    import pandas as pd

    from ..measure.stats import change_columns

    return pd.DataFrame({label: change_columns(runs[first]["files"], r["files"]) for label, r in runs.items()}).T


def tuned_table(pipe: EnsembleDiarization, sweep, configs: dict, files: list[dict], recs, member_seconds: dict,
                test_wall: float, base: str):
    """Each configuration at its tune-split threshold, scored on the test split, with its cost:
    embedding seconds of its members (x ``base``'s) and the pipeline's (segmentation, clustering
    and aggregation, ``test_wall`` minus every member's seconds, plus its members'), and its DER
    change against ``base`` alone with the paired bootstrap 95 % CI over the test files."""
    import pandas as pd

    seg_and_rest = test_wall - sum(member_seconds.values())  # segmentation, clustering, aggregation
    rows, runs = [], {}
    for label, weights in configs.items():
        g = sweep[sweep["config"] == label]
        best = g.loc[g["tune DER strict (%)"].idxmin()]
        runs[label] = split_scores(pipe, files, recs, weights, best["threshold"])
        t = runs[label]["totals"]
        emb_s = sum(member_seconds[n] for n, w in weights.items() if w > 0)
        rows.append({"config": label, "tuned threshold": best["threshold"], "tune DER (%)": best["tune DER strict (%)"],
                     "test DER strict (%)": 100 * t["der_strict"], "test DER FluidAudio (%)": 100 * t["der_fluidaudio"],
                     "speakers found (mean)": t["speakers_hyp_mean"],
                     f"embedding cost (x {base})": emb_s / member_seconds[base],
                     f"pipeline cost (x {base} alone)": (seg_and_rest + emb_s) / (seg_and_rest + member_seconds[base])})
    ens = pd.DataFrame(rows).set_index("config")
    return ens.join(_changes(runs, f"{base} alone").rename(columns={"Δ strict (pts)": f"Δ strict vs {base} (pts)",
                                            "Δ FluidAudio (pts)": f"Δ FluidAudio vs {base} (pts)"}))


def best_fusion(ens, members, base: str):
    """The fused configuration (neither member set alone) with the lowest *tune* DER: chosen on
    the tune split, reported on test."""
    fused = ens.drop(index=[f"{base} alone", f"{others_label(members, base)} alone"])
    return fused.loc[fused["tune DER (%)"].idxmin()]


def tta_table(segmentation: nn.Module, embedding: str, base: str, member: tuple, threshold: float, recs,
              tta_sets: dict = TTA_SETS):
    """Segmentation TTA over shifted windows (``shifted_tta`` of ``segmentation``, in torch) with
    one embedding member at its tuned ``threshold``, on fresh files: test DER, wall seconds of the
    pipeline, and the changes (strict with its paired bootstrap 95 % CI over files, and
    FluidAudio-style) and cost ratios against the first set (no TTA)."""
    import pandas as pd

    rows, runs = [], {}
    for label, shifts in tqdm(tta_sets.items(), desc="segmentation TTA"):
        tta = shifted_tta(segmentation, shifts)
        p = ensemble_pipeline(embedding, tta.forward, {base: member}, {base: 1.0})
        p.clustering.threshold = threshold
        files = [r.as_pyannote_file() for r in recs]
        t0 = time.perf_counter()
        hyps = [p(f).speaker_diarization for f in files]
        total = time.perf_counter() - t0
        runs[label] = score(recs, hyps)
        t = runs[label]["totals"]
        rows.append({"segmentation": label, "test DER strict (%)": 100 * t["der_strict"],
                     "test DER FluidAudio (%)": 100 * t["der_fluidaudio"], "wall (s)": total,
                     "segmentation + rest (s)": total - embedding_seconds(files, base)})
    tab = pd.DataFrame(rows).set_index("segmentation").join(_changes(runs, next(iter(runs))))
    first = tab.iloc[0]
    tab["pipeline cost (x)"] = tab["wall (s)"] / first["wall (s)"]
    tab["segmentation cost (x)"] = tab["segmentation + rest (s)"] / first["segmentation + rest (s)"]
    return tab


def worth(delta: float, ci: tuple[float, float], cost: float) -> str:
    """A DER change (points) with its 95 % CI against its cost multiplier, in words: a gain is
    one whose whole interval lies below zero (with no CI, one file: a change below zero)."""
    if np.isnan(ci[0]) or np.isnan(ci[1]):
        measured = f"{delta:+.2f} points (no CI: one file) for {cost:.2f}x the time"
        return ("worth considering: " if delta < 0 else "not worth it: ") + measured
    measured = f"{delta:+.2f} points [{ci[0]:+.2f}, {ci[1]:+.2f}] for {cost:.2f}x the time"
    if ci[1] < 0:
        return f"worth considering: {measured}"
    return f"not worth it: {measured}" + (" (no measurable gain)" if ci[0] < 0 else "")


def cost_verdict(*costs: float) -> str:
    """The guide's "efficiently": refuted when every ensemble costs more than its single model
    by more than the noise of a single run (``book.verdicts.MINOR_GAIN``); within noise when none
    is cheaper beyond it but some cost lies within it; partly when some ensemble is cheaper."""
    shown = " and ".join(f"{c:.2f}x" for c in costs)
    if all(c > MINOR_GAIN for c in costs):
        return f"refuted: {shown} the time"
    if all(c >= 1 / MINOR_GAIN for c in costs):
        near = " and ".join(f"{c:.2f}x" for c in costs if c <= MINOR_GAIN)
        return f"within noise: {shown} the time ({near} within ±{100 * (MINOR_GAIN - 1):.0f} % of the single model)"
    return f"partly: {shown} the time"
