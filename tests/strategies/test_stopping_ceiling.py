"""``oracle_stop`` in bench/strategies.py: the stopping ceiling the strategies report is read against."""

from __future__ import annotations

import pytest

from bench.strategies import oracle_stop


@pytest.mark.parametrize(
    ("grades", "wave", "expected"),
    [
        ({4: True, 8: True, 12: True, 16: True}, 4, 4),  # right from the first wave
        ({4: False, 8: True, 12: False, 16: True}, 4, 8),  # the first wave graded as the pool's
        ({4: True, 8: False, 12: False, 16: False}, 4, 8),  # wrong in the end: stop once wrong
        ({4: False, 8: False, 12: True, 16: False}, 4, 4),
        ({4: True, 8: True, 12: True, 16: False}, 4, 16),  # only the whole pool is graded as itself
        ({1: False, 2: False, 3: True, **{k: True for k in range(4, 17)}}, 1, 3),
    ],
)
def test_oracle_stops_at_the_first_wave_graded_as_the_whole_pool(grades: dict[int, bool], wave: int,
                                                                 expected: int) -> None:
    asked: list[int] = []

    def right_at(k: int) -> bool:
        asked.append(k)
        return grades[k]

    assert oracle_stop(right_at, wave) == expected
    assert all(k % wave == 0 and 0 < k <= 16 for k in asked)  # only whole waves of the pool


def test_a_wave_that_does_not_divide_the_pool_still_ends_at_the_pool() -> None:
    assert oracle_stop(lambda k: k == 16, 5) == 16
    assert oracle_stop(lambda k: k >= 10, 5) == 10
