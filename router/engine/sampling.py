"""Token selection from logits: greedy, temperature, top-k and nucleus (top-p), in NumPy.

Sorting 49k logits per row per step would cost as much as the model step itself, so nucleus and
top-k work on a candidate pool: the tokens whose probability is within a factor ``1e-4`` of the
most likely one (one vectorised comparison). Every token outside the pool is less likely than
every token inside it, so when the pool holds the top k, or enough mass for the nucleus, the
result is exact; otherwise that row falls back to a full sort. top-k is applied before top-p,
and the nucleus is taken over the renormalised top-k distribution, as transformers does.
"""

from __future__ import annotations

import numpy as np

from router.engine.types import SamplingParams

_POOL_LOG_RATIO = float(np.log(1e-4))


def row_generators(seed: int | None, rows: int) -> list[np.random.Generator]:
    """One generator per row; row ``i`` is seeded by ``(seed, i)``."""
    if seed is None:
        return [np.random.default_rng() for _ in range(rows)]
    return [np.random.default_rng([seed, i]) for i in range(rows)]


def select_tokens(
    logits: np.ndarray, params: SamplingParams, rngs: list[np.random.Generator]
) -> tuple[np.ndarray, np.ndarray]:
    """Pick one token per row of ``logits`` ([rows, vocab]).

    Returns the tokens and their log-probabilities under the model (log-softmax of the raw
    logits, whatever the temperature).
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
    if params.greedy:
        chosen = shifted.argmax(axis=1)
    else:
        scaled = shifted if params.temperature == 1.0 else shifted / np.float32(params.temperature)
        chosen = np.array([_sample_row(scaled[r], params, rngs[r]) for r in range(len(rngs))], dtype=np.int64)
    logprobs = shifted[np.arange(len(chosen)), chosen].astype(np.float64) - log_norm
    return chosen, logprobs


def _sample_row(scaled: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Inverse-CDF draw from one row of temperature-scaled logits whose maximum is 0."""
    if params.top_k > 0 or params.top_p < 1.0:
        ids, weights = _truncated(scaled, params)
    else:
        ids, weights = None, np.exp(scaled)
    cdf = np.cumsum(weights, dtype=np.float64)
    pick = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)
    return int(ids[pick]) if ids is not None else pick


def _truncated(scaled: np.ndarray, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (most likely first) and weights of the top-k, then top-p, support."""
    vocab = scaled.shape[0]
    k = params.top_k if 0 < params.top_k < vocab else vocab
    pool = np.flatnonzero(scaled > _POOL_LOG_RATIO)
    if pool.size < k < vocab:  # the top k reach below the pool
        pool = np.argpartition(-scaled, k - 1)[:k]
    ids = pool[np.argsort(-scaled[pool], kind="stable")][:k]
    weights = np.exp(scaled[ids].astype(np.float64))
    if params.top_p < 1.0:
        total = weights.sum() if k < vocab else np.exp(scaled.astype(np.float64)).sum()
        mass = np.cumsum(weights) / total
        if mass[-1] < params.top_p:  # the nucleus reaches below the pool
            ids = np.argsort(-scaled, kind="stable")
            weights = np.exp(scaled[ids].astype(np.float64))
            mass = np.cumsum(weights) / total
        keep = min(int(np.searchsorted(mass, params.top_p)) + 1, len(ids))
        ids, weights = ids[:keep], weights[:keep]
    return ids, weights
