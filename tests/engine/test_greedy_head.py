"""Greedy steps on the in-place graph's int8 head pick the float32 head's token.

The int8 head returns greedy logits: int8 values, with every token that could still be the argmax
(by a bound on the int8 error) and every likely one recomputed in float32. These tests hold them
to the float32 head: the same argmax and the same value there, the same generated tokens, the
log-probabilities within 1e-3, and greedy logits left in a state read as the float32 ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from router.engine import Engine
from router.engine.session import CPU, SessionSettings
from router.engine.types import SamplingParams

PROMPTS = ["Count the letters in the word banana.", "What is 12 plus 30?", "Name a colour."]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    """One tiny in-place build opened with the int8 greedy head and without it."""
    from tests.tiny_model import build_tiny

    root = tmp_path_factory.mktemp("greedy_head") / "tiny"
    build_tiny(root, seed=11, kv_caches=("concat", "inplace"))
    settings = SessionSettings(providers=(CPU,))
    yield Engine.load(root, settings, max_samples=8), Engine.load(root, settings, max_samples=8, int8_greedy_head=False)


def _both_heads(engine: Engine, prompt: str) -> tuple[np.ndarray, np.ndarray, int]:
    """One decode step's float32 logits and greedy logits on the same inputs, and how many logits
    the greedy step recomputed."""
    state = engine.prefill(engine.tokenizer.encode_prompt(prompt))
    token = int(state.logits[0].argmax())
    ids = np.array([[token]], dtype=np.int64)
    mask = np.concatenate([state.mask, np.ones((1, 1), dtype=np.int64)], axis=1)
    positions = state.lengths[:, None].copy()
    state.reserve(mask.shape[1])
    # The in-place cache takes the same slot twice: both passes see the same past.
    exact, _, none = engine._run(ids, mask, positions, state.kv, exact=True)
    greedy, _, recomputed = engine._run(ids, mask, positions, state.kv, exact=False)
    assert none == 0
    return exact[0, 0], greedy[0, 0], recomputed


def _check_argmax(engine: Engine, most_recomputed: float) -> None:
    """``most_recomputed``: the largest share of the vocabulary a step may recompute."""
    for prompt in PROMPTS:
        exact, greedy, recomputed = _both_heads(engine, prompt)
        top = int(exact.argmax())
        assert int(greedy.argmax()) == top
        assert greedy[top] == pytest.approx(exact[top], abs=1e-4)  # recomputed in float32
        assert 1 <= recomputed <= most_recomputed * len(exact)
        assert int(np.isclose(greedy, exact, atol=1e-4, rtol=0).sum()) >= recomputed
        if recomputed < len(exact):  # the rest are the int8 head's
            assert not np.allclose(greedy, exact, atol=1e-4)


def _check_same_greedy(with_head: Engine, without: Engine) -> None:
    before = with_head.stats.int8_head_steps
    for prompt in PROMPTS:
        a = with_head.generate(prompt, GREEDY)[0]
        b = without.generate(prompt, GREEDY)[0]
        assert a.token_ids == b.token_ids, prompt
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-3)
    assert with_head.stats.int8_head_steps - before >= len(PROMPTS) * 5
    assert without.stats.int8_head_steps == 0


def test_the_in_place_build_has_the_int8_head_and_it_can_be_turned_off(heads: tuple[Engine, Engine]) -> None:
    with_head, without = heads
    assert with_head.kv_cache == "inplace" and with_head.int8_greedy_head
    assert not without.int8_greedy_head
    concat = Engine.load(with_head.model_dir, SessionSettings(providers=(CPU,)), kv_cache="concat")
    assert not concat.int8_greedy_head  # the concat graph has only the float32 head


def test_greedy_logits_have_the_float32_heads_argmax(heads: tuple[Engine, Engine]) -> None:
    _check_argmax(heads[0], most_recomputed=1.0)  # a tiny vocabulary: most tokens are likely ones


def test_greedy_tokens_equal_the_float32_heads(heads: tuple[Engine, Engine]) -> None:
    _check_same_greedy(*heads)


def test_batched_greedy_rows_and_sampling_are_unchanged(heads: tuple[Engine, Engine]) -> None:
    with_head, without = heads
    for params in (SamplingParams(temperature=0.0, max_new_tokens=12), SamplingParams(max_new_tokens=12, seed=4)):
        a = with_head.generate(PROMPTS[0], params, n=3)
        b = without.generate(PROMPTS[0], params, n=3)
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-3 if params.greedy else 1e-5)


def test_int8_logits_left_in_a_state_read_as_the_float32_ones(heads: tuple[Engine, Engine]) -> None:
    """A greedy decode that stops leaves the last step's int8 logits; reading them (to sample, or
    to fork) gives the float32 head's."""
    with_head, without = heads
    ids = with_head.tokenizer.encode_prompt(PROMPTS[1])
    a, b = with_head.prefill(ids), without.prefill(ids)
    cancel_after = SamplingParams(temperature=0.0, max_new_tokens=4)
    with_head.decode(a, cancel_after)
    without.decode(b, cancel_after)
    # The fourth token is pending; feed it greedily as the next decode would, then read.
    with_head._feed(a, [list(p) for p in a.pending], greedy=True)
    without._feed(b, [list(p) for p in b.pending], greedy=True)
    assert a.greedy is not None and b.greedy is None
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    assert a.greedy is None
    fork = a.fork(2)
    np.testing.assert_allclose(fork.logits, np.repeat(b.logits, 2, axis=0), atol=1e-4)


@pytest.mark.slow
def test_smollm2_greedy_head(smollm2: Engine, smollm2_dir: Path) -> None:
    """The default build on the CPU: greedy logits keep the float32 head's argmax, and greedy output is its."""
    assert smollm2.int8_greedy_head
    _check_argmax(smollm2, most_recomputed=0.1)
    exact = Engine.load(smollm2_dir, SessionSettings(providers=(CPU,)), int8_greedy_head=False)
    _check_same_greedy(smollm2, exact)
