"""Speaker-verification sanity check of an embedding model (the baseline chapter): EER on real
utterances, every pair scored by cosine similarity."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_curve

from ..core.constants import SAMPLE_RATE
from ..core.data import _utterance, speakers_with_utterances


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER: the operating point where false-accept rate = false-reject rate."""
    fpr, tpr, _ = roc_curve(same.astype(int), scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def utterance_embeddings(model, speakers: list[str], per_speaker: int, max_seconds: float = 8.0):
    """(embeddings (N, D), speaker index (N,)) for the first ``per_speaker`` files of each speaker."""
    utts = speakers_with_utterances()
    embs, labels = [], []
    with torch.inference_mode():
        for k, spk in enumerate(speakers):
            for rel in utts[spk][:per_speaker]:
                x = torch.from_numpy(_utterance(rel)[: int(max_seconds * SAMPLE_RATE)])
                embs.append(model(x[None, None]).squeeze(0).numpy())
                labels.append(k)
    return np.stack(embs), np.array(labels)


def verification_eer(model, speakers: list[str], per_speaker: int = 10) -> dict:
    """EER over all pairs of utterances (cosine scoring)."""
    e, y = utterance_embeddings(model, speakers, per_speaker)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    iu = np.triu_indices(len(y), k=1)
    scores = (e @ e.T)[iu]
    same = (y[:, None] == y[None, :])[iu]
    return {"eer": equal_error_rate(scores, same), "trials": int(len(scores)), "target_trials": int(same.sum()),
            "utterances": int(len(y)), "speakers": len(speakers)}
