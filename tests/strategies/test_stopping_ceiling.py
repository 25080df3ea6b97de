"""``oracle_stop`` in bench/strategies.py: the stopping ceiling the strategies report is read against."""

from __future__ import annotations

import pytest

from bench.strategies import ORACLE, REPLAYED, oracle_stop, replay_adaptive, replayed_name, stopping_table


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


def test_a_replayed_rule_votes_over_what_it_drew() -> None:
    from router.domain import Candidate
    from router.engine import Completion, FinishReason

    answers = ["8", "7", "7", "7", "9", "9", "9", "9"]
    cands = [Candidate(Completion(i, a, [1], [-0.1], FinishReason.EOS, 3), answer=a) for i, a in enumerate(answers)]
    right = [a == "7" for a in answers]
    assert replay_adaptive(cands, right, "esc", None, 2) == (True, 4)  # window 7, 7: 7 leads 3-1
    assert replay_adaptive(cands, right, "beta", 0.95, 4) == (False, 8)  # 4 x "9" wins at 8
    assert replay_adaptive(cands, right, "beta", 0.6, 1) == (False, 1)  # one vote is a lead at 0.6


def test_the_stopping_table_judges_each_rule_against_sc16() -> None:
    def row(accuracy: float, samples: float) -> dict:
        return {"accuracy": accuracy, "mean_samples": samples}

    sc16 = row(0.25, 16)
    res = {"SC@16": sc16, replayed_name("beta", 0.8, 2): row(0.25, 5.0), replayed_name("esc", None, 2): row(0.24, 4.0),
           replayed_name("beta", 0.95, 4): row(0.25, 6.0), f"{REPLAYED}{ORACLE} 4": row(0.25, 4.5)}
    table = stopping_table(res, sc16)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table if line.startswith("| ") and "---" not in line}
    assert rows["beta 0.8, waves of 2"].endswith("| 3.20x | yes |")
    assert rows["esc, windows of 2"].endswith("| 4.00x | no |")  # 1 pt down
    assert rows["beta 0.95, waves of 4"].endswith("| 2.67x | no |")  # too few saved
    assert "reads the answers" in rows[f"{ORACLE} 4"]
    assert "SC@16" not in rows
