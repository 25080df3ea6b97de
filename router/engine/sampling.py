"""Token selection from logits: greedy, temperature, top-k and nucleus (top-p), in NumPy.

Sorting 49k logits per row per step would cost as much as the model step itself, so nucleus and
top-k work on a candidate pool: the tokens whose probability is within a factor ``1e-4`` of the
most likely one (one vectorised comparison). Every token outside the pool is less likely than
every token inside it, so when the pool holds the top k, or enough mass for the nucleus, the
result is exact; otherwise that row falls back to a full sort. top-k is applied before top-p,
and the nucleus is taken over the renormalised top-k distribution, as transformers does.

On a GPU the forward pass is fast and this host-side selection is what a decode step waits for
(bench/results/gpu_check.md: at n=64 it took more than the forward pass), so full-vocabulary
passes are kept few: sums over the vocabulary are float32 (NumPy sums a row pairwise, so the
relative error stays near 1e-6; a float64 sum of [64, 49152] took 3.6x as long), and the
temperature is applied in place.
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
    logits: np.ndarray, params: SamplingParams, rngs: list[np.random.Generator], uniforms: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pick one token per row of ``logits`` ([rows, vocab]).

    Sampling takes one uniform draw per row from its generator, or ``uniforms[row]`` when given
    (draws already taken for the device's selector, which handed the step back).

    Returns the tokens and their log-probabilities under the model (log-softmax of the raw
    logits, whatever the temperature). A temperature below ``MIN_TEMPERATURE`` is greedy (see
    ``SamplingParams.greedy``), so ``1 / temperature`` below is always finite in float32.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    log_norm = np.log(weights.sum(axis=1).astype(np.float64))
    rows = len(shifted)
    if params.greedy:
        chosen = shifted.argmax(axis=1)
    elif params.top_k > 0 or params.top_p < 1.0:
        scaled = shifted if params.temperature == 1.0 else shifted / np.float32(params.temperature)
        draws = _draws(rngs, uniforms)
        chosen = np.array([_sample_row(scaled[r], params, draws[r]) for r in range(rows)], dtype=np.int64)
    else:  # the common case, vectorised: one exp and one cumsum for all rows
        if params.temperature != 1.0:
            weights = np.multiply(shifted, np.float32(1.0 / params.temperature), out=weights)
            np.exp(weights, out=weights)
        chosen = _inverse_cdf(weights, _draws(rngs, uniforms))
    logprobs = shifted[np.arange(rows), chosen].astype(np.float64) - log_norm
    return chosen, logprobs


def _inverse_cdf(weights: np.ndarray, uniforms: np.ndarray, block: int = 256) -> np.ndarray:
    """Row ``r``'s index where the running sum of ``weights[r]`` passes ``uniforms[r]`` of its total.

    Two levels instead of one cumsum over the vocabulary (a [8, 49152] float64 cumsum took 4.6 ms
    here): sums of blocks of 256, a cumsum over those, then a cumsum inside the one block hit, for
    all rows at once. Counting the entries ``<= target`` is ``searchsorted(side="right")`` on these
    non-decreasing sums.
    """
    rows, vocab = weights.shape
    pad = (-vocab) % block
    if pad:
        weights = np.pad(weights, ((0, 0), (0, pad)))
    blocks = weights.reshape(rows, -1, block)
    block_cdf = np.cumsum(blocks.sum(axis=2).astype(np.float64), axis=1)
    targets = (uniforms * block_cdf[:, -1])[:, None]
    hit = np.minimum((block_cdf <= targets).sum(axis=1), block_cdf.shape[1] - 1)
    every = np.arange(rows)
    before = np.where(hit > 0, block_cdf[every, np.maximum(hit - 1, 0)], 0.0)
    inner = before[:, None] + np.cumsum(blocks[every, hit], axis=1, dtype=np.float64)
    offset = np.minimum((inner <= targets).sum(axis=1), block - 1)
    return np.minimum(hit * block + offset, vocab - 1)


def _draws(rngs: list[np.random.Generator], uniforms: np.ndarray | None) -> np.ndarray:
    """One uniform per row: the ones given, else one from each row's generator."""
    return uniforms if uniforms is not None else np.array([rng.random() for rng in rngs])


def _sample_row(scaled: np.ndarray, params: SamplingParams, uniform: float) -> int:
    """Inverse-CDF draw (at ``uniform``) from the top-k / top-p support of one row of scaled logits (maximum 0)."""
    ids, weights = _truncated(scaled, params)
    cdf = np.cumsum(weights)
    pick = min(int(np.searchsorted(cdf, uniform * cdf[-1], side="right")), len(cdf) - 1)
    return int(ids[pick])


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
