from __future__ import annotations

import pytest

from router.evaluation.datasets import FAMILIES, REASONING_GYM, generated, reasoning_gym


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generated_questions_are_reproducible_and_gradable(family: str) -> None:
    qs = generated(family, 5, seed=3)
    assert qs == generated(family, 5, seed=3) and qs != generated(family, 5, seed=4)
    for q in qs:
        assert q.grade(f"The answer is {q.answer}.") == (q.answer, True)
        assert q.grade("I am not sure.")[1] is False


def test_comparison_grading_is_strict() -> None:
    q = next(q for q in generated("comparison", 20, seed=0) if q.choices)
    small, large = sorted(q.choices, key=int)
    assert q.grade(f"{large} is larger than {small}.")[1] is True
    assert q.grade(f"{small} is larger than {large}.")[1] is False


@pytest.mark.parametrize("name", sorted(REASONING_GYM))
def test_reasoning_gym_tasks_load_offline_and_grade(name: str) -> None:
    qs = reasoning_gym(name, 3, seed=0)
    assert len(qs) == 3 and all(q.text and q.answer for q in qs)
    assert all(q.grade(f"The answer is {q.answer}.")[1] for q in qs)
