"""The exported decoder + engine against transformers on a tiny random Llama (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from router.engine import Engine, FinishReason, SamplingParams

PROMPTS = ["What is the capital of France?", "Add 17 and 25.", "Which is larger, 19 or 71?"]


def hf_greedy(hf, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n, do_sample=False, pad_token_id=0,
        )
    return [t for t in out[0, len(ids):].tolist() if t != 2]


def hf_logprobs(hf, ids: list[int], gen: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = hf(torch.tensor([ids + gen])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return np.array([lp[len(ids) - 1 + i, t].item() for i, t in enumerate(gen)])


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers_generate(tiny: Engine, tiny_hf, prompt: str) -> None:
    ids = tiny.tokenizer.encode_prompt(prompt)
    ours = tiny.generate(prompt, SamplingParams(max_new_tokens=24))[0]
    ref = hf_greedy(tiny_hf, ids, 24)
    assert ours.token_ids == ref
    assert len(ours.token_ids) > 0


def test_batched_rows_equal_batch_one(tiny: Engine) -> None:
    params = SamplingParams(max_new_tokens=16)
    single = tiny.generate(PROMPTS[0], params)[0]
    batch = tiny.generate(PROMPTS[0], params, n=4)
    assert [c.token_ids for c in batch] == [single.token_ids] * 4


def test_sampled_logprobs_match_recomputation(tiny: Engine, tiny_hf) -> None:
    ids = tiny.tokenizer.encode_prompt(PROMPTS[1])
    comps = tiny.generate(PROMPTS[1], SamplingParams(temperature=1.0, max_new_tokens=12, seed=7), n=8)
    assert len(comps) == 8
    assert len({tuple(c.token_ids) for c in comps}) > 1, "8 samples at T=1 should not all agree"
    for c in comps:
        if c.finish_reason is FinishReason.EOS:
            continue
        np.testing.assert_allclose(c.logprobs, hf_logprobs(tiny_hf, ids, c.token_ids), atol=2e-4)


def test_ragged_forks_equal_independent_runs(tiny: Engine) -> None:
    """Rows extended by different numbers of tokens decode as if each ran alone (padding is inert)."""
    prefix = tiny.tokenizer.encode_prompt(PROMPTS[2])
    steps = [tiny.tokenizer.encode(s) for s in ("71", " is larger. Think step", " Think")]
    params = SamplingParams(max_new_tokens=10)

    state = tiny.prefill(prefix).fork(3)
    tiny.extend(state, steps)
    together = tiny.decode(state, params)

    alone = []
    for step in steps:
        single = tiny.prefill(prefix + step)
        alone.append(tiny.decode(single, params)[0].token_ids)
    assert [c.token_ids for c in together] == alone
    assert len({len(s) for s in steps}) == 3


def test_decode_keeps_state_for_tree_search(tiny: Engine) -> None:
    """After decode, a row can be selected, forked and continued; same as decoding straight through."""
    prefix = tiny.tokenizer.encode_prompt(PROMPTS[0])
    straight = tiny.decode(tiny.prefill(prefix), SamplingParams(max_new_tokens=12))[0].token_ids

    state = tiny.prefill(prefix)
    first = tiny.decode(state, SamplingParams(max_new_tokens=5))[0]
    children = state.select([0, 0])
    rest = tiny.decode(children, SamplingParams(max_new_tokens=7))
    assert first.token_ids + rest[0].token_ids == straight
    assert rest[0].token_ids == rest[1].token_ids
