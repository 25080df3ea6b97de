"""The inplace KV cache (GroupQueryAttention writing a preallocated buffer) against the concat one.

One build with both graphs over one weights file, as the default SmolLM2 build is: every engine
operation must give the same tokens, and logits equal within float32 rounding, whatever the cache
layout: prefill, sampling from one prefill, forks extended by ragged steps, compaction of finished
rows, and growth of the buffers past their first capacity. ``kv_cache="auto"`` must pick the
in-place graph on the CPU provider, and the concat one where a single-row decoder shares the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from router.engine import Engine, SamplingParams
from router.engine.engine import choose_kv_cache
from router.engine.session import CPU, SessionSettings
from router.engine.state import inplace_capacity
from router.errors import ModelIntegrityError, ModelUnavailableError, ProviderUnavailableError
from tests.engine.stand_ins import CudaSessionReport

PROMPT = "Count the letters in the word banana."


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    """The same build opened twice: its concat graph, and what ``auto`` picks on the CPU."""
    from tests.tiny_model import build_tiny

    root = tmp_path_factory.mktemp("inplace")
    build_tiny(root / "both", seed=5, kv_caches=("concat", "inplace"))
    settings = SessionSettings(providers=(CPU,))
    yield (Engine.load(root / "both", settings, max_samples=16, kv_cache="concat"),
           Engine.load(root / "both", settings, max_samples=16))


def test_one_weights_file_serves_both_graphs_and_auto_picks_in_place_on_the_cpu(pair: tuple[Engine, Engine]) -> None:
    concat, inplace = pair
    assert (concat.kv_cache, inplace.kv_cache) == ("concat", "inplace")
    manifest = inplace.manifest
    assert manifest.kv_caches == ("concat", "inplace")
    assert sorted(manifest.files) == ["model-inplace.onnx", "model.onnx", "model.weights", "tokenizer.json"]
    graphs = [inplace.model_dir / manifest.decoder_for(kv) for kv in manifest.kv_caches]
    weights = (inplace.model_dir / "model.weights").stat().st_size
    assert all(g.stat().st_size < weights / 10 for g in graphs)  # the weights live in one file, once


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


def test_layout_choice_by_provider_single_row_decoder_and_build(
    pair: tuple[Engine, Engine], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.tiny_model import build_tiny

    _, inplace = pair
    both = inplace.manifest
    concat_only = tmp_path_factory.mktemp("concat_only") / "m"
    build_tiny(concat_only, seed=5)  # the same weights, the concat graph only (as the q4 build)
    settings = SessionSettings(providers=(CPU,))
    assert choose_kv_cache("auto", both, "CUDAExecutionProvider") == "concat"
    assert choose_kv_cache("auto", both, CPU, single_row=True) == "concat"
    assert Engine.load(inplace.model_dir, settings, single_row_dir=concat_only).kv_cache == "concat"
    assert Engine.load(concat_only, settings).kv_cache == "concat"  # auto, and the build has no other
    with pytest.raises(ModelIntegrityError, match="KV cache layout"):
        Engine.load(inplace.model_dir, settings, single_row_dir=concat_only, kv_cache="inplace")
    with pytest.raises(ModelUnavailableError, match="has no decoder with the 'inplace' KV cache"):
        Engine.load(concat_only, settings, kv_cache="inplace")
    with pytest.raises(ProviderUnavailableError, match="CPU provider only"):
        Engine(inplace.model_dir, both, CudaSessionReport(), kv_cache="inplace")
    with pytest.raises(ModelIntegrityError, match="unknown KV cache layout 'paged'"):
        Engine(inplace.model_dir, replace(both, kv_cache="paged"), inplace._session)


def test_capacity_grows_by_at_least_double_in_blocks_of_64() -> None:
    assert inplace_capacity(10) == 128  # the prompt plus 64 slots of decoding, rounded up
    assert inplace_capacity(129, 128) == 256
    assert inplace_capacity(600, 256) == 704
    assert all(inplace_capacity(n, c) % 64 == 0 and inplace_capacity(n, c) >= max(n, 2 * c)
               for n in range(1, 300, 7) for c in (0, 64, 192))


def test_settings_wire_the_kv_cache(pair: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from router.config import Settings

    model_dir = pair[1].model_dir
    monkeypatch.setenv("ROUTER_ENGINE__PROVIDERS", '["CPUExecutionProvider"]')
    for value, layout in (("concat", "concat"), ("inplace", "inplace"), ("auto", "inplace")):
        monkeypatch.setenv("ROUTER_ENGINE__KV_CACHE", value)
        settings = Settings(models_dir=model_dir.parent, model=model_dir.name)
        assert settings.load_engine().kv_cache == layout
    monkeypatch.setenv("ROUTER_ENGINE__KV_CACHE", "paged")
    with pytest.raises(ValidationError, match="kv_cache"):
        Settings()
