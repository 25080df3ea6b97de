"""Training-free verifiers: scores in [0, 1], computed from what they claim to use."""

from __future__ import annotations

import math

import pytest

from router.engine import Completion, Engine, FinishReason, SamplingParams
from router.verifiers import ScoredItem, get_verifier, verifier_names


def test_registry_has_the_training_free_verifiers() -> None:
    assert {"self_likelihood", "agreement", "lm_judge"} <= set(verifier_names())
    with pytest.raises(ValueError, match="unknown verifier"):
        get_verifier("oracle")


def test_self_likelihood_is_the_geometric_mean_probability(tiny: Engine) -> None:
    comps = tiny.generate("Add 17 and 25.", SamplingParams(temperature=1.0, max_new_tokens=10, seed=2), n=4)
    scores = get_verifier("self_likelihood").score([ScoredItem("q", c, "") for c in comps], tiny)
    for c, s in zip(comps, scores, strict=True):
        assert 0.0 < s <= 1.0
        assert s == pytest.approx(math.exp(sum(c.logprobs) / len(c.logprobs)))


def test_agreement_is_the_vote_share(tiny: Engine) -> None:
    [c] = tiny.generate("hi", SamplingParams(max_new_tokens=2))
    votes = {"42": 3, "7": 1}
    items = [ScoredItem("q", c, "42", votes, 5), ScoredItem("q", c, "7", votes, 5), ScoredItem("q", c, "", votes, 5)]
    assert get_verifier("agreement").score(items, tiny) == [0.6, 0.2, 0.0]


def test_lm_judge_scores_are_probabilities_and_depend_on_the_answer(tiny: Engine) -> None:
    comps = tiny.generate("Add 17 and 25.", SamplingParams(temperature=1.0, max_new_tokens=8, seed=3), n=3)
    judge = get_verifier("lm_judge")
    scores = judge.score([ScoredItem("Add 17 and 25.", c, "") for c in comps], tiny)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert judge.score([ScoredItem("Add 17 and 25.", comps[0], "")], tiny) == scores[:1]
    assert len(set(scores)) > 1 or len({c.text for c in comps}) == 1


def test_lm_judge_shortens_what_would_not_fit_the_context(tiny: Engine) -> None:
    # The tiny model holds 256 tokens: a long question, and an answer of 1500 characters, would not.
    [c] = tiny.generate("Add 17 and 25.", SamplingParams(max_new_tokens=4))
    long_answer = Completion(0, "blah " * 300 + "so the answer is 42", [1], [-0.1], FinishReason.LENGTH, 10)
    judge = get_verifier("lm_judge")
    for question, comp in (("Why? " * 400 + "What is 17 + 25?", c), ("What is 17 + 25?", long_answer)):
        ids = judge._prompt_ids(tiny, question, comp.text.strip()[-1500:])
        assert len(tiny.tokenizer.encode_prompt(question)) > 0 and len(ids) < tiny.context_length
        text = tiny.tokenizer.decode(ids)
        assert "What is 17 + 25?" in text and "[...]" in text
        [score] = judge.score([ScoredItem(question, comp, "")], tiny)
        assert 0.0 <= score <= 1.0
    assert "answer is 42" in tiny.tokenizer.decode(judge._prompt_ids(tiny, "q", long_answer.text[-1500:]))


@pytest.mark.slow
def test_lm_judge_on_smollm2_scores_real_answers(smollm2: Engine) -> None:
    def answer(text: str) -> Completion:
        ids = smollm2.tokenizer.encode(text)
        return Completion(0, text, ids, [-0.1] * len(ids), FinishReason.EOS, 10)

    items = [ScoredItem("What is the capital of France?", answer(f"The capital of France is {city}."), city)
             for city in ("Paris", "Berlin")]
    scores = get_verifier("lm_judge").score(items, smollm2)
    assert all(0.0 < s < 1.0 for s in scores)
    assert scores[0] != scores[1]
