"""Token selection against exact distributions on small and large vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from router.engine.sampling import row_generators, select_tokens
from router.engine.types import MIN_TEMPERATURE, SamplingParams


def draw(logits: np.ndarray, params: SamplingParams, n: int) -> np.ndarray:
    rng = row_generators(params.seed, 1)
    return np.array([select_tokens(logits[None], params, rng)[0][0] for _ in range(n)])


def test_greedy_is_argmax() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 1000)).astype(np.float32)
    assert (select_tokens(logits, SamplingParams(), [])[0] == logits.argmax(-1)).all()


def test_temperature_sampling_matches_softmax() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    counts = np.bincount(draw(logits, SamplingParams(temperature=1.0, seed=1), 20000), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.015)


def test_top_k_and_top_p_restrict_support() -> None:
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32))
    assert set(draw(logits, SamplingParams(temperature=1.0, top_k=2, seed=2), 2000)) == {0, 1}
    # nucleus 0.65 keeps {0, 1} (0.4 + 0.3 >= 0.65), renormalised to 4/7, 3/7
    got = draw(logits, SamplingParams(temperature=1.0, top_p=0.65, seed=3), 20000)
    assert set(got) == {0, 1}
    assert abs((got == 0).mean() - 4 / 7) < 0.015


def test_nucleus_reaching_below_the_candidate_pool_is_exact() -> None:
    """One token at p=0.31 and 49k tiny ones that hold the rest: the nucleus needs ~42k of them."""
    logits = np.full(49152, -10.0, dtype=np.float32)
    logits[0] = 0.0
    w = np.exp(logits.astype(np.float64))
    mass = np.cumsum(w) / w.sum()
    keep = int(np.searchsorted(mass, 0.9)) + 1
    got = draw(logits, SamplingParams(temperature=1.0, top_p=0.9, seed=4), 4000)
    assert abs((got == 0).mean() - 1.0 / mass[keep - 1] * w[0] / w.sum()) < 0.03
    assert len(set(got)) > 2500 and got.max() < keep


def test_top_k_reaching_below_the_candidate_pool() -> None:
    logits = np.full(1000, -20.0, dtype=np.float32)
    logits[:3] = [0.0, -1.0, -2.0]
    got = draw(logits, SamplingParams(temperature=1.0, top_k=10, seed=6), 3000)
    assert len(set(got) - {0, 1, 2}) <= 7, "more than k distinct tokens"
    assert (got < 3).mean() > 0.99 and {0, 1, 2} <= set(got)


def test_top_k_then_top_p_uses_the_renormalised_top_k() -> None:
    logits = np.log(np.array([0.3, 0.2, 0.2, 0.15, 0.15], dtype=np.float32))
    # top_k=2 leaves {0: 0.6, 1: 0.4}; nucleus 0.5 of that keeps only token 0
    got = draw(logits, SamplingParams(temperature=1.0, top_k=2, top_p=0.5, seed=7), 500)
    assert set(got) == {0}


def test_logprobs_are_the_models_whatever_the_temperature() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.2]], dtype=np.float32))
    for t in (0.0, 0.5, 2.0):
        tokens, lp = select_tokens(logits, SamplingParams(temperature=t, seed=1), row_generators(1, 1))
        assert np.isclose(lp[0], np.log([0.5, 0.3, 0.2][tokens[0]]))


def test_row_generators_are_independent_of_row_count() -> None:
    a = [g.random() for g in row_generators(9, 3)]
    b = [g.random() for g in row_generators(9, 5)][:3]
    assert a == b


@pytest.mark.parametrize("temperature", [0.3, 1.5])
def test_temperature_scales_distribution(temperature: float) -> None:
    logits = np.log(np.array([0.6, 0.4], dtype=np.float32))
    p = np.array([0.6, 0.4]) ** (1 / temperature)
    p /= p.sum()
    got = draw(logits, SamplingParams(temperature=temperature, seed=5), 20000)
    assert abs((got == 0).mean() - p[0]) < 0.015


def test_block_inverse_cdf_agrees_with_one_cumsum_over_the_vocabulary() -> None:
    """The two-level, all-rows search picks the token a float64 cumsum over the whole row picks,
    up to float32 rounding of the block sums at a boundary, and never a zero-weight token."""
    from router.engine.sampling import _inverse_cdf

    rng = np.random.default_rng(11)
    for trial in range(30):
        rows, vocab = int(rng.integers(1, 12)), int(rng.choice([300, 1000, 49152]))
        weights = np.exp(rng.normal(scale=rng.uniform(0.5, 6), size=(rows, vocab)) - 5).astype(np.float32)
        weights[:, rng.integers(0, vocab, vocab // 2)] = 0.0
        uniforms = rng.random(rows)
        uniforms[0] = 0.0
        got = _inverse_cdf(weights, uniforms)
        for r in range(rows):
            cdf = np.cumsum(weights[r].astype(np.float64))
            target = uniforms[r] * cdf[-1]
            want = min(int(np.searchsorted(cdf, target, side="right")), vocab - 1)
            assert weights[r, got[r]] > 0, f"trial {trial} row {r}: zero-weight token {got[r]} chosen"
            if got[r] != want:  # only where the target sits on a boundary, within float32 rounding
                lo = cdf[got[r] - 1] if got[r] else 0.0
                assert lo - 1e-5 * cdf[-1] <= target <= cdf[got[r]] + 1e-5 * cdf[-1], (trial, r, got[r], want)


@pytest.mark.parametrize("options", [{}, {"top_k": 5}, {"top_p": 0.9}, {"top_k": 5, "top_p": 0.9}])
@pytest.mark.parametrize("temperature", [1e-45, 1e-39, 1e-30, MIN_TEMPERATURE / 2])
def test_a_temperature_below_the_floor_is_greedy(temperature: float, options: dict) -> None:
    """1 / T overflowing float32 made 0 * inf = NaN weights, and every row drew token 0."""
    logits = np.random.default_rng(3).normal(size=(4, 1000)).astype(np.float32)
    params = SamplingParams(temperature=temperature, seed=1, **options)
    params.validate()
    with np.errstate(over="raise", invalid="raise"):  # no overflow or invalid value on the way
        tokens, lp = select_tokens(logits, params, row_generators(1, 4))
    want = logits.argmax(-1)
    assert (tokens == want).all()
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    np.testing.assert_allclose(lp, log_softmax[np.arange(4), want], rtol=1e-5)
    assert params.greedy


@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.99}])
def test_a_temperature_just_above_the_floor_still_samples(options: dict) -> None:
    """At T = 2 * floor, logits 0, -T, -2T are drawn with weights e^0, e^-1, e^-2: still a distribution."""
    t = 2 * MIN_TEMPERATURE
    logits = np.array([0.0, -t, -2 * t], dtype=np.float32)
    params = SamplingParams(temperature=t, seed=8, **options)
    assert not params.greedy
    with np.errstate(over="raise", invalid="raise"):
        got = draw(logits, params, 20000)
    p = np.exp(logits.astype(np.float64) / t)
    p /= p.sum()
    np.testing.assert_allclose(np.bincount(got, minlength=3) / 20000, p, atol=0.015)
