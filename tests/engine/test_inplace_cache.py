"""The inplace KV cache (GroupQueryAttention writing a preallocated buffer) against the concat one.

Both builds carry the same random weights; every engine operation must give the same tokens, and
logits equal within float32 rounding, whatever the cache layout: prefill, sampling from one
prefill, forks extended by ragged steps, compaction of finished rows, and growth of the buffers
past their first capacity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from router.engine import Engine, SamplingParams
from router.engine.session import CPU, SessionSettings
from router.engine.state import inplace_capacity
from router.errors import ModelIntegrityError, ProviderUnavailableError

PROMPT = "Count the letters in the word banana."


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    from tests.tiny_model import build_tiny

    root = tmp_path_factory.mktemp("inplace")
    build_tiny(root / "concat", seed=5, inplace_dir=root / "inplace")
    settings = SessionSettings(providers=(CPU,))
    yield (Engine.load(root / "concat", settings, max_samples=16),
           Engine.load(root / "inplace", settings, max_samples=16))


def test_greedy_tokens_and_logits_match(pair: tuple[Engine, Engine]) -> None:
    concat, inplace = pair
    for prompt in (PROMPT, "What is the capital of France?", [{"role": "user", "content": "Add 17 and 25."}]):
        a, b = (e.generate(prompt, SamplingParams(max_new_tokens=40))[0] for e in pair)
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-4)
    ids = concat.tokenizer.encode_prompt(PROMPT)
    np.testing.assert_allclose(concat.prefill(ids).logits, inplace.prefill(ids).logits, atol=2e-4)


def test_samples_from_one_prefill_match_and_rows_finish_apart(pair: tuple[Engine, Engine]) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=30, seed=11, stop=("a",))
    a, b = (e.generate(PROMPT, params, n=8) for e in pair)  # stop strings end rows early: compaction
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert len({len(c.token_ids) for c in a}) > 1


def test_growth_past_the_first_capacity_keeps_the_cache(pair: tuple[Engine, Engine]) -> None:
    states = []
    for engine in pair:
        tok = engine.tokenizer
        ids = tok.encode_prompt(PROMPT)
        filler = tok.encode(" banana word letter step" * 40)[:130]
        assert len(filler) == 130
        state = engine.prefill(ids)
        engine.extend(state, [filler[:60]])
        engine.extend(state, [filler[60:]])  # past the first capacity of the inplace cache
        states.append(state)
    a, b = states
    assert b.slots == a.slots == len(ids) + 130 and b.capacity > inplace_capacity(len(ids))
    np.testing.assert_allclose(a.logits, b.logits, atol=2e-4)
    after = [e.decode(st, SamplingParams(max_new_tokens=12))[0].token_ids for e, st in zip(pair, states, strict=True)]
    assert after[0] == after[1]


def test_forks_with_ragged_steps_match(pair: tuple[Engine, Engine]) -> None:
    results = []
    for engine in pair:
        tok = engine.tokenizer
        state = engine.prefill(tok.encode_prompt(PROMPT))
        children = engine.extend(state.fork(3), [[], tok.encode(" banana"), tok.encode(" the word")])
        first = engine.decode(children, SamplingParams(max_new_tokens=6, stop=("\n",)))
        keep = engine.extend(children.select([2, 0]), [tok.encode(" so"), []])  # drop a row, reorder
        second = engine.decode(keep, SamplingParams(temperature=1.0, max_new_tokens=8, seed=4))
        results.append(([c.token_ids for c in first], [c.token_ids for c in second], keep.slots))
    assert results[0] == results[1]


def test_a_fork_copies_the_cache_so_siblings_do_not_share_it(pair: tuple[Engine, Engine]) -> None:
    _, inplace = pair
    state = inplace.prefill(inplace.tokenizer.encode_prompt(PROMPT))
    twins = state.fork(2)
    assert twins.buffers is not None and state.buffers is not None
    assert not np.shares_memory(twins.buffers[0], state.buffers[0])
    before = state.buffers[0][:, :, : state.slots].copy()
    inplace.decode(twins, SamplingParams(max_new_tokens=5))  # writes the twins' buffers only
    np.testing.assert_array_equal(state.buffers[0][:, :, : state.slots], before)


def test_the_inplace_build_refuses_other_layouts_and_providers(pair: tuple[Engine, Engine]) -> None:
    concat, inplace = pair
    with pytest.raises(ModelIntegrityError, match="KV cache layout"):
        Engine.load(inplace.model_dir, SessionSettings(providers=(CPU,)), single_row_dir=concat.model_dir)
    with pytest.raises(ProviderUnavailableError, match="CPU provider only"):
        Engine(inplace.model_dir, inplace.manifest, _CudaSessionReport())
    with pytest.raises(ModelIntegrityError, match="unknown KV cache layout 'paged'"):
        Engine(inplace.model_dir, replace(inplace.manifest, kv_cache="paged"), inplace._session)


class _CudaSessionReport:
    """What a session on the CUDA provider reports (there is no GPU here to open one)."""

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", CPU]


def test_capacity_grows_by_at_least_double_in_blocks_of_64() -> None:
    assert inplace_capacity(10) == 128  # the prompt plus 64 slots of decoding, rounded up
    assert inplace_capacity(129, 128) == 256
    assert inplace_capacity(600, 256) == 704
    assert all(inplace_capacity(n, c) % 64 == 0 and inplace_capacity(n, c) >= max(n, 2 * c)
               for n in range(1, 300, 7) for c in (0, 64, 192))
