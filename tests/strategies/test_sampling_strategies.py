"""self_consistency, best_of_n and escalate on real engines (tiny for mechanics, SmolLM2 for behaviour)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from scipy import stats

from router.domain import Plan, Query
from router.engine import CancelToken, Engine, FinishReason, SamplingParams
from router.strategies import StrategyContext, get_strategy
from router.strategies.sampling import beta_stop_probability, tally, wave_params
from router.strategies.self_consistency import replayed_stop, stop_test


def plan_for(strategy: str, samples: int, temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 12,
             **options) -> Plan:
    return Plan(level=strategy, strategy=strategy, samples=samples,
                sampling=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed),
                policy="test", policy_version="0", reason="test", options=options)


def run(engine: Engine, strategy: str, text: str, plan: Plan, **ctx):
    return get_strategy(strategy).run(Query(text=text), plan, StrategyContext(engine=engine,
                                                                              cancel=ctx.pop("cancel", CancelToken()),
                                                                              **ctx))


@pytest.mark.parametrize(("top", "second"), [(0, 0), (1, 0), (3, 1), (5, 2), (8, 0), (4, 4), (10, 3)])
def test_beta_stop_probability_matches_scipy(top: int, second: int) -> None:
    assert beta_stop_probability(top, second) == pytest.approx(stats.beta.sf(0.5, top + 1, second + 1), abs=1e-12)


def test_the_replayed_rule_stops_where_the_votes_first_separate() -> None:
    beta = stop_test("beta", 4, 0.95)
    # 4 agreeing votes: P(Beta(5, 1) > 1/2) = 0.969 >= 0.95, so the first wave is enough.
    assert replayed_stop(["7"] * 16, 4, beta) == 4
    # 2 vs 2 never separates; abstentions ("") do not vote: every wave is drawn.
    assert replayed_stop(["7", "8", "", "7", "8", ""] * 2, 4, beta) == 12
    # 3 vs 1 after one wave (0.81), 7 vs 1 after two (0.98).
    assert replayed_stop(["7", "7", "8", "7"] + ["7"] * 4 + ["8"] * 4, 4, beta) == 8
    assert replayed_stop([], 4, beta) == 0
    # A lower confidence stops on a lead of one: P(Beta(3, 2) > 1/2) = 0.69.
    assert replayed_stop(["7", "8", "7", "9"], 1, stop_test("beta", 1, 0.6)) == 1
    assert replayed_stop(["7", "8", "7", "9"], 2, stop_test("beta", 2, 0.6)) == 4
    assert replayed_stop(["7"] * 8, 4, stop_test("none", 4, 0.95)) == 8


def test_the_esc_rule_stops_after_the_first_unanimous_window() -> None:
    esc = stop_test("esc", 2, 0.95)
    assert replayed_stop(["7"] * 8, 2, esc) == 2
    # Agreement across windows does not count, only within the latest one.
    assert replayed_stop(["7", "8", "8", "7", "7", "7"], 2, esc) == 6
    # An abstention breaks a window; equal numbers spelled differently do not.
    assert replayed_stop(["", "", "7", "", "0.5", "1/2", "9", "9"], 2, esc) == 6
    assert replayed_stop(["1", "2", "3", "4", "5", "6"], 3, stop_test("esc", 3, 0.95)) == 6
    with pytest.raises(ValueError, match="unknown stop rule 'vote'"):
        stop_test("vote", 2, 0.95)


def test_wave_seeds_differ_and_repeat() -> None:
    p = SamplingParams(temperature=1.0, seed=7)
    assert wave_params(p, 0).seed != wave_params(p, 1).seed
    assert wave_params(p, 3) == wave_params(p, 3)
    assert wave_params(SamplingParams(), 2).seed is None


def test_votes_are_counted_per_answer_and_abstentions_do_not_vote(tiny: Engine) -> None:
    out = run(tiny, "self_consistency", "Add 17 and 25.",
              plan_for("self_consistency", 8, stop_rule="none", answer_kind="text", wave=3))
    assert len(out.candidates) == 8 and out.usage.samples == 8
    answered = [c for c in out.candidates if c.answer]
    assert sum(out.votes.values()) == len(answered)
    for answer, n in out.votes.items():
        assert n == sum(1 for c in answered if c.answer == answer)
    assert out.usage.model_calls == 3  # waves of 3, 3, 2
    assert out.usage.completion_tokens == sum(c.completion.completion_tokens for c in out.candidates)
    [chosen] = [c for c in out.candidates if c.chosen]
    assert out.votes.get(chosen.answer, 0) == max(out.votes.values(), default=0)
    assert out.text == chosen.completion.text


@pytest.mark.parametrize("seed", [0, 4])  # 0: both rules stop early (esc at 6, beta at 2); 4: neither does
def test_a_stop_rule_run_draws_what_its_replay_says(tiny: Engine, seed: int) -> None:
    """Under ``stop_rule: esc`` or ``beta`` the strategy draws exactly the samples the replayed rule
    says, and the same ones an SC@8 run with the same seed draws (what bench/strategies.py relies on)."""
    plan = plan_for("self_consistency", 8, seed=seed, stop_rule="none", answer_kind="text", wave=2, max_new_tokens=1)
    full = run(tiny, "self_consistency", "Add 17 and 25.", plan)
    answers = [c.answer for c in full.candidates]
    for rule, confidence in (("esc", 0.95), ("beta", 0.6)):
        k = replayed_stop(answers, 2, stop_test(rule, 2, confidence))
        out = run(tiny, "self_consistency", "Add 17 and 25.",
                  replace(plan, options={**plan.options, "stop_rule": rule, "confidence": confidence}))
        assert out.usage.samples == k, (rule, answers)
        assert [c.completion.token_ids for c in out.candidates] == [c.completion.token_ids for c in full.candidates[:k]]


def test_tally_merges_equal_numbers() -> None:
    from router.domain import Candidate
    from router.engine import Completion, FinishReason

    def cand(answer: str) -> Candidate:
        return Candidate(Completion(0, answer, [1], [-0.1], FinishReason.EOS, 3), answer=answer)

    assert tally([cand("0.5"), cand("1/2"), cand("3"), cand(""), cand("3")]) == {"0.5": 2, "3": 2}


def test_same_seed_same_run_other_seed_other_samples(tiny: Engine) -> None:
    a = run(tiny, "self_consistency", "Add 17 and 25.", plan_for("self_consistency", 6, stop_rule="none"))
    b = run(tiny, "self_consistency", "Add 17 and 25.", plan_for("self_consistency", 6, stop_rule="none"))
    c = run(tiny, "self_consistency", "Add 17 and 25.", plan_for("self_consistency", 6, stop_rule="none", seed=1))
    texts = [[x.completion.text for x in o.candidates] for o in (a, b, c)]
    assert texts[0] == texts[1] != texts[2]
    assert len(set(texts[0])) > 1, "waves must not repeat each other's samples"


def test_best_of_n_picks_the_top_scored_candidate(tiny: Engine) -> None:
    out = run(tiny, "best_of_n", "Count the letters in the word banana.",
              plan_for("best_of_n", 6, verifier="self_likelihood", answer_kind="text"))
    scores = [c.scores["self_likelihood"] for c in out.candidates]
    assert all(0.0 <= s <= 1.0 for s in scores)
    [chosen] = [c for c in out.candidates if c.chosen]
    assert chosen.scores["self_likelihood"] == max(s for c, s in zip(out.candidates, scores, strict=True)
                                                   if c.answer or not any(x.answer for x in out.candidates))


def test_best_of_n_weighted_voting_sums_scores_per_answer(tiny: Engine) -> None:
    out = run(tiny, "best_of_n", "Add 17 and 25.",
              plan_for("best_of_n", 6, verifier="self_likelihood", selection="weighted", answer_kind="text"))
    weight: dict[str, float] = {}
    for c in out.candidates:
        if c.answer:
            weight[c.answer] = weight.get(c.answer, 0.0) + c.scores["self_likelihood"]
    [chosen] = [c for c in out.candidates if c.chosen]
    assert chosen.answer == max(weight, key=lambda a: weight[a])


@pytest.mark.parametrize(("threshold", "escalates"), [(0.0, False), (1.01, True)])
def test_escalate_only_below_the_threshold(tiny: Engine, threshold: float, escalates: bool) -> None:
    out = run(tiny, "escalate", "Add 17 and 25.",
              plan_for("escalate", 6, threshold=threshold, stop_rule="none", answer_kind="text"))
    first = out.candidates[0]
    assert first.completion.token_ids == tiny.generate("Add 17 and 25.", SamplingParams(max_new_tokens=12))[0].token_ids
    assert 0.0 <= first.scores["self_likelihood"] <= 1.0
    assert (out.usage.samples > 1) is escalates
    assert out.usage.samples == (6 if escalates else 1)
    assert out.usage.prompt_tokens > 0 and out.usage.model_calls == (1 + 2 if escalates else 1)


def test_deadline_returns_truncated_best_so_far(tiny: Engine) -> None:
    out = run(tiny, "self_consistency", "Add 17 and 25.",
              plan_for("self_consistency", 8, stop_rule="none", max_new_tokens=200),
              deadline=time.monotonic() + 0.01)
    assert out.flags.truncated_by_deadline
    assert len(out.candidates) < 8 or any(c.completion.finish_reason.value == "deadline" for c in out.candidates)


def test_cancel_stops_work(tiny: Engine) -> None:
    token = CancelToken()
    token.cancel()
    before = tiny.stats.decode_steps
    out = run(tiny, "self_consistency", "Add 17 and 25.", plan_for("self_consistency", 8), cancel=token)
    assert out.candidates == [] and out.text == ""
    assert tiny.stats.decode_steps == before


@pytest.mark.slow
def test_adaptive_stop_spends_less_where_samples_agree(smollm2: Engine) -> None:
    plan = plan_for("self_consistency", 16, temperature=0.7, max_new_tokens=48, wave=2, confidence=0.9)
    agree = run(smollm2, "self_consistency", "What is 2 + 2?", plan)
    disagree = run(smollm2, "self_consistency", "What is 347 * 29?", plan)
    assert agree.usage.samples < disagree.usage.samples
    top = sorted(agree.votes.values(), reverse=True) + [0]
    assert beta_stop_probability(top[0], top[1]) >= 0.9  # it stopped because it was sure
    spread = sorted(disagree.votes.values(), reverse=True) + [0]
    assert beta_stop_probability(spread[0], spread[1]) < 0.9 and disagree.usage.samples == 16


@pytest.mark.slow
def test_esc_stops_at_the_first_unanimous_window_on_smollm2(smollm2: Engine) -> None:
    plan = plan_for("self_consistency", 16, temperature=0.7, max_new_tokens=48, wave=2, stop_rule="esc")
    agree = run(smollm2, "self_consistency", "What is 2 + 2?", plan)
    disagree = run(smollm2, "self_consistency", "What is 347 * 29?", plan)
    assert agree.usage.samples < disagree.usage.samples
    last = agree.candidates[-2:]
    assert last[0].answer and last[0].answer == last[1].answer  # it stopped on a unanimous window
    windows = [disagree.candidates[i:i + 2] for i in range(0, disagree.usage.samples - 2, 2)]
    assert all(not w[0].answer or w[0].answer != w[1].answer for w in windows)  # none before its last


def test_self_refine_drafts_critiques_and_revises_within_rounds(tiny: Engine) -> None:
    out = run(tiny, "self_refine", "Add 17 and 25.", plan_for("self_refine", 1, rounds=2, answer_kind="text"))
    # a random model never says CORRECT: draft + 2 x (critique, revision) = 5 calls, 3 versions of
    # one answer (one sample, as plan.samples says)
    assert [c.scores.get("critique_ok") for c in out.candidates] == [0.0, 0.0, None]
    assert out.usage.model_calls == 5 and out.usage.samples == 1
    assert out.candidates[-1].chosen and out.text == out.candidates[-1].completion.text
    # 12 tokens is the plan's own cap, not the caller's budget: not truncated by it
    assert out.candidates[0].completion.finish_reason is FinishReason.LENGTH and not out.flags.truncated_by_budget


def test_self_refine_stops_when_the_verifier_is_satisfied(tiny: Engine) -> None:
    out = run(tiny, "self_refine", "Add 17 and 25.",
              plan_for("self_refine", 1, rounds=3, verifier="agreement", threshold=0.0, answer_kind="text"))
    assert out.usage.model_calls == 1 and out.usage.samples == 1


def test_self_refine_on_a_passed_deadline_returns_at_once(tiny: Engine) -> None:
    out = run(tiny, "self_refine", "Add 17 and 25.", plan_for("self_refine", 1), deadline=time.monotonic() - 1)
    assert out.text == "" and out.candidates == [] and out.usage.model_calls == 1


def test_self_refine_cut_by_a_budget_lowered_token_cap_is_truncated_by_budget(tiny: Engine) -> None:
    """Every call stops at the cap the caller's budget set: flagged, as single and the samplers flag it."""
    plan = replace(plan_for("self_refine", 1, max_new_tokens=6, rounds=2, answer_kind="text"), capped_by_budget=True)
    out = run(tiny, "self_refine", "Add 17 and 25.", plan)
    assert all(c.completion.finish_reason is FinishReason.LENGTH for c in out.candidates)
    assert out.flags.truncated_by_budget and not out.flags.truncated_by_deadline
    assert out.usage.model_calls == 5 and len(out.candidates) == 3 and out.usage.samples == plan.samples == 1


def test_self_refine_near_the_context_stops_refining_and_keeps_its_answer(tiny: Engine) -> None:
    """Queries from nearly the whole context to short: the critique or revision prompt (question,
    answer, feedback) stops fitting at some length. Refining stops there with the latest answer,
    flagged truncated_by_budget, instead of the engine's INVALID_ARGUMENT about "prompt"."""
    tok, context = tiny.tokenizer, tiny.context_length
    plan = plan_for("self_refine", 1, max_new_tokens=4, rounds=2, answer_kind="text")
    base = "Add 17 and 25. "
    longest = next(k for k in range(1, context) if tok.count_prompt_tokens(base * (k + 1)) >= context)
    calls_seen = set()
    for k in range(longest, 0, -1):  # the longest first: it used to raise
        query = base * k
        out = run(tiny, "self_refine", query, plan)  # used to raise InvalidArgumentError("prompt", ...)
        calls = out.usage.model_calls
        calls_seen.add(calls)
        assert out.candidates and out.candidates[-1].chosen and out.text == out.candidates[-1].completion.text
        assert len(out.candidates) == 1 + (calls - 1) // 2 and out.usage.samples == 1
        # a random model never says CORRECT: fewer than 5 calls means the context ran out
        assert out.flags.truncated_by_budget == (calls < 5), (k, calls)
        for c in out.candidates:
            assert c.completion.prompt_tokens + c.completion.completion_tokens <= context
        if tok.count_prompt_tokens(query) + plan.sampling.max_new_tokens > context:  # even the draft is cut
            assert calls == 1 and out.candidates[0].completion.completion_tokens < plan.sampling.max_new_tokens
    assert {1, 5} <= calls_seen and calls_seen & {2, 3, 4}, calls_seen  # it stopped before the critique and after


def test_single_with_cot_asks_for_steps(tiny: Engine) -> None:
    plain = run(tiny, "single", "Add 17 and 25.", plan_for("single", 1, temperature=0.0))
    cot = run(tiny, "single", "Add 17 and 25.", plan_for("single", 1, temperature=0.0, cot=True))
    assert cot.usage.prompt_tokens > plain.usage.prompt_tokens
    msgs = [{"role": "user", "content": "Add 17 and 25."}]
    from router.strategies.single import COT, with_cot
    assert with_cot(msgs)[0]["content"].endswith(COT) and msgs[0]["content"] == "Add 17 and 25."
