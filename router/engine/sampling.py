"""Token selection from logits: greedy, temperature, top-k and nucleus (top-p), in NumPy.

Nucleus sampling needs the probabilities in sorted order, and sorting 49k logits per row per step
would cost as much as the model step itself. The nucleus is a prefix of that order, so we take
the ``_CANDIDATES`` largest with ``argpartition`` first and only sort the whole row when their
mass falls short of ``top_p`` — the result is exact either way.
"""

from __future__ import annotations

import numpy as np

from router.engine.types import SamplingParams

_CANDIDATES = 256


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 for stable log probabilities."""
    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def row_generators(seed: int | None, rows: int, offset: int = 0) -> list[np.random.Generator]:
    """One generator per row; row ``i`` is seeded by ``(seed, offset + i)``."""
    if seed is None:
        return [np.random.default_rng() for _ in range(rows)]
    return [np.random.default_rng([seed, offset + i]) for i in range(rows)]


def _sample_row(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    scaled = logits.astype(np.float64) / params.temperature
    k = params.top_k if params.top_k > 0 else scaled.shape[0]
    if k < scaled.shape[0] or params.top_p < 1.0:
        limit = min(k, _CANDIDATES) if params.top_p < 1.0 else k
        idx = np.argpartition(-scaled, limit - 1)[:limit] if limit < scaled.shape[0] else np.arange(scaled.shape[0])
        idx = idx[np.argsort(-scaled[idx], kind="stable")]
        if params.top_p < 1.0:
            full = np.exp(scaled - scaled.max())
            total = full.sum()
            mass = np.cumsum(full[idx]) / total
            if mass[-1] < params.top_p and limit < k:
                idx = np.argsort(-scaled, kind="stable")[:k]
                mass = np.cumsum(full[idx]) / total
            keep = int(np.searchsorted(mass, params.top_p) + 1)
            idx = idx[: min(keep, len(idx))]
        cand = scaled[idx]
    else:
        idx, cand = None, scaled
    p = np.exp(cand - cand.max())
    cdf = np.cumsum(p)
    choice = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    choice = min(choice, len(cdf) - 1)
    return int(idx[choice]) if idx is not None else choice


def select_tokens(
    logits: np.ndarray, params: SamplingParams, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Pick one token per row of ``logits`` ([rows, vocab])."""
    if params.greedy:
        return logits.argmax(axis=-1)
    return np.array([_sample_row(logits[i], params, rngs[i]) for i in range(logits.shape[0])], dtype=np.int64)
