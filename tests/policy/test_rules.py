"""Policy rules: cheapest adequate level, utility corners, and how hints bound the choice."""

from __future__ import annotations

import math

import pytest

from router.domain import Hints
from router.engine import SamplingParams
from router.errors import CapacityError
from router.policy import LevelSpec, Policy, RouteFacts, Rule, choose

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=64)
SAMPLED = SamplingParams(temperature=0.7, max_new_tokens=64, seed=0)
LADDER = (
    LevelSpec("single", "single", 1, GREEDY, cost_tokens=50, latency_ms=1000),
    LevelSpec("sc", "self_consistency", 8, SAMPLED, cost_tokens=400, latency_ms=4000),
    LevelSpec("bon", "best_of_n", 16, SAMPLED, cost_tokens=800, latency_ms=9000),
    LevelSpec("refine", "self_refine", 1, GREEDY),  # not predicted: only forced
)


def policy(rule: Rule, cpu_max_level: str = "") -> Policy:
    return Policy("p", LADDER, "single", rule=rule, cpu_max_level=cpu_max_level)


def facts(single: float, sc: float, bon: float, **kw) -> RouteFacts:
    return RouteFacts(success={"single": single, "sc": sc, "bon": bon}, **kw)


@pytest.mark.parametrize(("p", "expected"), [
    ((0.9, 0.95, 0.97), "single"),  # cheapest already clears the target
    ((0.3, 0.7, 0.9), "sc"),
    ((0.1, 0.4, 0.65), "bon"),
    ((0.1, 0.4, 0.3), "sc"),  # none clears it: the most likely level
    ((0.2, 0.2, 0.2), "single"),  # ties among the most likely go to the cheapest
])
def test_threshold_picks_cheapest_level_clearing_the_target(p: tuple[float, float, float], expected: str) -> None:
    plan = policy(Rule("threshold", target=0.6)).plan(Hints(), 64, facts(*p))
    assert plan.level == expected
    assert plan.predicted == {"single": p[0], "sc": p[1], "bon": p[2]}
    assert plan.difficulty == pytest.approx(1 - p[0])
    assert plan.estimated_tokens == {lv.name: lv.cost_tokens for lv in LADDER}[expected]


def test_utility_lambda_zero_buys_the_most_likely_level() -> None:
    assert policy(Rule("utility", lam=0.0)).plan(Hints(), 64, facts(0.5, 0.6, 0.61)).level == "bon"
    # equal success: the cheaper one
    assert policy(Rule("utility", lam=0.0)).plan(Hints(), 64, facts(0.6, 0.6, 0.6)).level == "single"


def test_utility_lambda_infinite_always_takes_the_cheapest() -> None:
    assert policy(Rule("utility", lam=math.inf)).plan(Hints(), 64, facts(0.0, 0.9, 1.0)).level == "single"


def test_utility_trades_success_against_cost() -> None:
    # gain of sc over single: 0.3 for 350 tokens; lambda 0.5/1k tokens charges 0.175 -> sc wins
    assert policy(Rule("utility", lam=0.5)).plan(Hints(), 64, facts(0.4, 0.7, 0.72)).level == "sc"
    # lambda 1/1k charges 0.35 > 0.3 -> single wins
    assert policy(Rule("utility", lam=1.0)).plan(Hints(), 64, facts(0.4, 0.7, 0.72)).level == "single"


def test_choose_is_empty_without_levels() -> None:
    assert choose([], {}, Rule("threshold")) is None


def test_sample_budget_excludes_levels_and_says_so() -> None:
    plan = policy(Rule("threshold", target=0.9)).plan(Hints(max_samples=8), 64, facts(0.1, 0.5, 0.95))
    assert plan.level == "sc"
    assert plan.capped_by_budget
    assert "budget excluded bon" in plan.reason


def test_token_budget_excludes_levels_expected_to_spend_more() -> None:
    plan = policy(Rule("threshold", target=0.9)).plan(Hints(max_tokens=100), 64, facts(0.1, 0.5, 0.95))
    assert plan.level == "single"
    assert plan.capped_by_budget
    assert plan.sampling.max_new_tokens == 64  # 100 does not cut the level's own 64


def test_deadline_drops_levels_whose_latency_would_not_fit() -> None:
    f = facts(0.1, 0.7, 0.95, remaining_ms=5000)
    assert policy(Rule("threshold", target=0.9)).plan(Hints(), 64, f).level == "sc"
    # the running estimate, not the prior, decides
    slow_sc = facts(0.1, 0.7, 0.95, remaining_ms=5000, latency_ms=lambda lv: 6000 if lv.name == "sc" else 500)
    assert policy(Rule("threshold", target=0.9)).plan(Hints(), 64, slow_sc).level == "bon"


def test_nothing_fits_the_deadline_runs_the_cheapest_level() -> None:
    plan = policy(Rule("threshold", target=0.9)).plan(Hints(), 64, facts(0.1, 0.5, 0.95, remaining_ms=10))
    assert plan.level == "single"
    assert "no level fits the deadline" in plan.reason


def test_a_budget_below_every_level_runs_the_cheapest_and_says_so_without_contradiction() -> None:
    # single's estimate (50 tokens) is above the 8-token budget too: the reason must not say the
    # budget excluded the level that runs.
    plan = policy(Rule("threshold", target=0.3)).plan(Hints(max_tokens=8), 64, facts(0.5, 0.7, 0.9))
    assert plan.level == "single"
    assert plan.capped_by_budget
    assert plan.sampling.max_new_tokens == 8
    assert "no level fits the budget" in plan.reason
    assert "excluded single" not in plan.reason


def test_forced_level_wins_over_the_rule_and_the_cap() -> None:
    pol = policy(Rule("threshold", target=0.5), cpu_max_level="single")
    plan = pol.plan(Hints(level="refine"), 64, facts(0.9, 0.9, 0.9, accelerated=False))
    assert (plan.level, plan.reason, plan.degraded) == ("refine", "forced by request", False)
    forced_big = pol.plan(Hints(level="bon", max_samples=4), 64, facts(0.9, 0.9, 0.9))
    assert (forced_big.level, forced_big.samples, forced_big.capped_by_budget) == ("bon", 4, True)


def test_cpu_cap_limits_the_ladder_and_marks_degraded_only_when_it_changed_the_choice() -> None:
    pol = policy(Rule("threshold", target=0.9), cpu_max_level="sc")
    hard = pol.plan(Hints(), 64, facts(0.1, 0.5, 0.95, accelerated=False))
    assert (hard.level, hard.degraded) == ("sc", True)
    assert "CPU cap" in hard.reason
    easy = pol.plan(Hints(), 64, facts(0.95, 0.96, 0.97, accelerated=False))
    assert (easy.level, easy.degraded) == ("single", False)
    on_gpu = pol.plan(Hints(), 64, facts(0.1, 0.5, 0.95, accelerated=True))
    assert (on_gpu.level, on_gpu.degraded) == ("bon", False)


def test_fixed_rule_and_missing_predictions_use_the_default_level() -> None:
    assert policy(Rule("fixed")).plan(Hints(), 64, facts(0.0, 1.0, 1.0)).level == "single"
    routed = policy(Rule("threshold")).plan(Hints(), 64, RouteFacts())
    assert routed.level == "single" and "no difficulty prediction" in routed.reason


def test_server_sample_limit_is_a_clear_error() -> None:
    with pytest.raises(CapacityError) as err:  # not the caller's fault, not a momentary overload
        policy(Rule("fixed")).plan(Hints(level="bon"), 8, RouteFacts())
    assert "hints.budget.max_samples <= 8" in str(err.value)
    assert policy(Rule("fixed")).plan(Hints(level="bon", max_samples=8), 8, RouteFacts()).samples == 8
