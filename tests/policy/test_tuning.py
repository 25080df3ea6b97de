"""Offline replay: the threshold sweep scores what the chosen level really did."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router.engine import SamplingParams
from router.policy import LevelSpec, Rule
from router.policy.tuning import (
    LAMBDA_GRID,
    Point,
    best_within_budget,
    cheapest_reaching,
    check_disjoint,
    collect_outcomes,
    most_accurate,
    oracle,
    oracle_picks,
    paired_bootstrap,
    pareto_front,
    plateau,
    plateau_centre,
    replay,
    route,
    routed_correct,
    sweep,
    sweep_threshold,
    sweep_utility,
    uniform,
    wilson_interval,
)

P = SamplingParams()
LADDER = [LevelSpec("cheap", "single", 1, P, cost_tokens=10), LevelSpec("dear", "self_consistency", 8, P,
                                                                        cost_tokens=100)]
# 4 questions: q0, q1 easy (cheap right), q2, q3 hard (only dear right)
CORRECT = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
TOKENS = np.array([[10, 100], [12, 90], [8, 110], [10, 100]], dtype=float)
SUCCESS = np.array([[0.9, 0.95], [0.8, 0.9], [0.2, 0.7], [0.3, 0.8]])


def test_replay_routes_each_question_and_scores_the_real_outcome() -> None:
    point = replay(LADDER, Rule("threshold", target=0.5), SUCCESS, CORRECT, TOKENS)
    assert point.accuracy == 1.0  # easy ones stay cheap, hard ones go dear
    assert point.mean_tokens == (10 + 12 + 110 + 100) / 4
    assert point.shares == {"cheap": 0.5, "dear": 0.5}


def test_sweep_corners_are_the_uniform_levels() -> None:
    points = sweep_threshold(LADDER, SUCCESS, CORRECT, TOKENS, targets=[0.0, 0.5, 1.0])
    uni = uniform(CORRECT, TOKENS, ["cheap", "dear"])
    assert (points[0].accuracy, points[0].mean_tokens) == uni["cheap"]  # target 0: always the cheapest
    # target 1: nothing clears it, so each question takes its most likely level (dear here)
    assert (points[2].accuracy, points[2].mean_tokens) == uni["dear"]


def test_best_within_budget_and_oracle() -> None:
    points = sweep_threshold(LADDER, SUCCESS, CORRECT, TOKENS, targets=[0.0, 0.5, 1.0])
    assert best_within_budget(points, max_mean_tokens=60).setting == 0.5
    assert best_within_budget(points, max_mean_tokens=20).setting == 0.0
    assert best_within_budget(points, max_mean_tokens=5).setting == 0.0  # nothing affordable: the cheapest
    assert oracle(CORRECT, TOKENS) == (1.0, (10 + 12 + 110 + 100) / 4)


def test_route_is_what_replay_scores() -> None:
    idx = route(LADDER, Rule("threshold", target=0.5), SUCCESS)
    assert idx.tolist() == [0, 0, 1, 1]
    assert routed_correct(LADDER, Rule("threshold", target=0.5), SUCCESS, CORRECT).tolist() == [1, 1, 1, 1]


def test_utility_sweep_corners_and_the_routing_band() -> None:
    points = sweep_utility(LADDER, SUCCESS, CORRECT, TOKENS, lams=[0.0, 2.0, math.inf])
    assert points[0].shares == {"cheap": 0.0, "dear": 1.0}  # lambda 0: the most likely level
    assert points[2].shares == {"cheap": 1.0, "dear": 0.0}  # lambda inf: the cheapest
    # lambda 2/1k tokens: easy 0.8-0.02 > 0.9-0.2, hard 0.3-0.02 < 0.8-0.2: easy cheap, hard dear
    assert (points[1].accuracy, points[1].shares) == (1.0, {"cheap": 0.5, "dear": 0.5})
    assert sweep("utility", LADDER, SUCCESS, CORRECT, TOKENS)[-1].setting == math.inf
    assert LAMBDA_GRID[0] == 0.0 and math.isinf(LAMBDA_GRID[-1]) and list(LAMBDA_GRID) == sorted(LAMBDA_GRID)
    with pytest.raises(ValueError, match="threshold"):
        sweep("fixed", LADDER, SUCCESS, CORRECT, TOKENS)


def test_cheapest_reaching_and_most_accurate() -> None:
    points = sweep_threshold(LADDER, SUCCESS, CORRECT, TOKENS, targets=[0.0, 0.5, 1.0])
    assert cheapest_reaching(points, 0.9).setting == 0.5  # 1.0 at 58 tokens beats 1.0 at 100
    assert cheapest_reaching(points, 0.5).setting == 0.0
    assert cheapest_reaching(points, 1.01) is None
    assert most_accurate(points).setting == 0.5  # cheaper among the equally accurate


def test_plateau_centre_keeps_the_widest_margin() -> None:
    targets = [round(t, 2) for t in np.linspace(0, 1, 101)]
    points = sweep_threshold(LADDER, SUCCESS, CORRECT, TOKENS, targets=targets)
    first = best_within_budget(points, max_mean_tokens=60)
    assert first.setting == 0.31  # the first target above the hard questions' 0.3
    run = plateau(points, first)
    assert (run[0].setting, run[-1].setting) == (0.31, 0.8)  # up to the easy questions' lowest 0.8
    assert plateau_centre(points, first).setting == 0.55


def test_pareto_front() -> None:
    pts = [Point(0, 0.5, 10, {}), Point(1, 0.4, 20, {}), Point(2, 0.9, 50, {}), Point(3, 0.9, 60, {}),
           Point(4, 1.0, 100, {})]
    assert [p.setting for p in pareto_front(pts)] == [0, 2, 4]


def test_oracle_picks_the_cheapest_correct_level() -> None:
    assert oracle_picks(CORRECT, TOKENS).tolist() == [0, 0, 1, 1]
    assert oracle_picks(np.array([[0, 0]]), np.array([[30.0, 20.0]])).tolist() == [1]  # none right: cheapest


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi) and lo == pytest.approx(0.2366, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_bootstrap() -> None:
    a = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_bootstrap(np.ones(8), np.zeros(8))
    assert (d, lo, hi) == (1.0, 1.0, 1.0)
    d, lo, hi = paired_bootstrap(a, 1 - a, seed=3)
    assert lo <= d <= hi and d == pytest.approx(0.25)
    assert paired_bootstrap(a, 1 - a, seed=3) == (d, lo, hi)  # seeded
    with pytest.raises(ValueError):
        paired_bootstrap(a, a[:3])


def _row(qid: str, level: str, correct: bool, tokens: int, split: str = "train", text: str = "") -> dict:
    return {"id": qid, "family": "f", "split": split, "question": text or f"question {qid}", "level": level,
            "correct": correct, "completion_tokens": tokens}


def test_collect_outcomes_keeps_complete_questions_and_first_rows() -> None:
    rows = [
        _row("a", "cheap", True, 10), _row("a", "dear", False, 100), _row("a", "cheap", False, 99),  # repeat: ignored
        _row("b", "cheap", False, 12),  # no dear row: incomplete
        _row("c", "dear", True, 90, split="test"), _row("c", "cheap", False, 11, split="test"),
        _row("c", "policy:adaptive", True, 50, split="test"),  # a policy's own choice: not a level
        _row("d", "escalate", True, 40),  # another level only: incomplete for these levels
    ]
    out = collect_outcomes(rows, ["cheap", "dear"])
    assert out.ids == ("a", "c") and out.incomplete == ("b", "d")
    assert out.correct.tolist() == [[1, 0], [0, 1]]
    assert out.tokens.tolist() == [[10, 100], [11, 90]]
    assert out.splits == ("train", "test") and out.split_sizes() == {"train": 1, "test": 1}
    test = out.split("test")
    assert test.ids == ("c",) and test.correct.tolist() == [[0, 1]]
    assert len(out.split("unseen")) == 0 and out.split("unseen").correct.shape == (0, 2)


def test_collect_outcomes_refuses_a_question_in_two_splits() -> None:
    rows = [_row("a", "cheap", True, 10, split="train"), _row("a", "dear", True, 100, split="test")]
    with pytest.raises(ValueError, match="more than one split"):
        collect_outcomes(rows, ["cheap", "dear"])


def test_check_disjoint() -> None:
    check_disjoint(["a", "b"], {"test": ["c"], "unseen": ["d", "e"]})
    with pytest.raises(ValueError, match="'test' are in the fit set"):
        check_disjoint(["a", "b"], {"test": ["b", "c"]})
    with pytest.raises(ValueError, match="report sets 'test' and 'unseen'"):
        check_disjoint(["a"], {"test": ["c"], "unseen": ["c"]})


@pytest.mark.parametrize(("change", "problem"), [
    ({"correct": "false"}, "'correct' must be true or false, got \"false\""),
    ({"correct": 1}, "'correct' must be true or false, got 1"),
    ({"completion_tokens": math.nan}, "'completion_tokens' must be a whole number >= 0, got NaN"),
    ({"completion_tokens": -3}, "'completion_tokens' must be a whole number >= 0, got -3"),
    ({"completion_tokens": "40"}, "'completion_tokens' must be a whole number >= 0, got \"40\""),
    ({"completion_tokens": True}, "'completion_tokens' must be a whole number >= 0, got true"),
    ({"id": 7}, "'id' must be a non-empty string, got 7"),
    ({"level": ""}, "'level' must be a non-empty string, got \"\""),
    ({"split": None}, "'split' must be a string, got null"),
])
def test_row_problem_names_a_value_of_the_wrong_type(change: dict, problem: str) -> None:
    from router.policy.tuning import row_problem

    assert row_problem(_row("a", "cheap", False, 10)) is None
    assert row_problem(_row("a", "cheap", False, 10) | change) == problem
    assert row_problem({"id": "a", "level": "cheap"}) == "missing 'correct', 'completion_tokens'"
    assert row_problem([1, 2]) == "not a JSON object (list)"


def test_collect_outcomes_refuses_a_row_of_the_wrong_type() -> None:
    rows = [_row("a", "cheap", True, 10), _row("a", "dear", False, 100) | {"correct": "false"}]
    with pytest.raises(ValueError, match="result row 1 is not usable: 'correct' must be true or false"):
        collect_outcomes(rows, ["cheap", "dear"])
