"""``oracle_stop`` in bench/strategies.py: the stopping ceiling the strategies report is read against."""

from __future__ import annotations

import pytest

from bench.strategies import (
    ORACLE,
    REPLAYED,
    majority_index,
    oracle_stop,
    parse_rules,
    pool_rows,
    replay,
    replayed_name,
    stopping_table,
)


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


def test_a_pool_decides_every_replayed_row_alone() -> None:
    answers = ["8", "7", "7", "7", "9", "9", "9", "9"] + ["9"] * 8
    right = [a == "7" for a in answers]
    tokens = list(range(1, 17))
    rows = pool_rows(answers, right, tokens, rules=[("esc", None, 2), ("beta", 0.95, 4), ("beta", 0.6, 1)])
    assert rows[replayed_name("esc", None, 2)] == (True, 1 + 2 + 3 + 4, 4)  # window 7, 7: 7 leads 3-1
    # 4-3 at 8 and 8-3 at 12 are not sure at 0.95 (0.64, 0.93); 12-3 at 16 is, and "9" wins.
    assert rows[replayed_name("beta", 0.95, 4)] == (False, sum(tokens), 16)
    assert rows[replayed_name("beta", 0.6, 1)] == (False, 1, 1)  # one vote is a lead at 0.6
    assert rows["sample@1"] == (False, 1, 1)
    assert rows["SC@4"] == (True, 10, 4) and rows["SC@16"] == (False, sum(tokens), 16)
    assert rows["pass@2"] == (True, 3, 2) and rows["pass@16"][0]
    # SC@16 is wrong: the ceiling stops at the first wave that is wrong too (8 samples).
    assert rows[f"{REPLAYED}{ORACLE} 4"] == (False, sum(range(1, 9)), 8)


def test_majority_merges_equal_answers_and_keeps_the_first_of_equals() -> None:
    assert majority_index(["", "1/2", "3", "0.5", "3"]) == 1  # 1/2 and 0.5 tie with 3; 1/2 came first
    assert majority_index(["", ""]) is None


def test_the_replay_reads_saved_pools_and_parses_rules() -> None:
    pools = [{"temperature": 0.3, "answers": ["7"] * 16, "right": [True] * 16, "tokens": [5] * 16},
             {"temperature": 0.3, "answers": [str(i) for i in range(16)], "right": [False] * 16, "tokens": [5] * 16},
             {"temperature": 0.7, "answers": ["1", "2"] * 8, "right": [True, False] * 8, "tokens": [5] * 16}]
    res = replay(pools, parse_rules("beta:4:0.8,esc:2"))
    assert set(res) == {"0.3", "0.7"}
    assert res["0.3"][replayed_name("beta", 0.8, 4)]["mean_samples"] == 10.0  # 4 and 16
    assert res["0.3"][replayed_name("esc", None, 2)]["accuracy"] == 0.5
    assert res["0.7"]["SC@16"]["accuracy"] == 1.0  # 8-8: the first of equals, "1", is right
    assert parse_rules("beta:3") == [("beta", 0.95, 3)]
    for bad in ("vote:2", "beta:0", "beta:2:1.5", "esc", "beta:two", "beta:2:0.8:1"):
        with pytest.raises(ValueError):
            parse_rules(bad)


def test_the_stopping_table_judges_each_rule_against_sc16() -> None:
    def row(accuracy: float, samples: float, least: int = 1, most: int = 16) -> dict:
        return {"accuracy": accuracy, "mean_samples": samples, "min_samples": least, "max_samples": most}

    sc16 = row(0.25, 16, least=16)
    res = {"SC@16": sc16, replayed_name("beta", 0.8, 2): row(0.25, 5.0), replayed_name("esc", None, 2): row(0.24, 4.0),
           replayed_name("beta", 0.95, 4): row(0.25, 6.0), f"{REPLAYED}{ORACLE} 4": row(0.25, 4.5),
           replayed_name("beta", 0.6, 1): row(0.3, 1.0, least=1, most=1)}
    table = stopping_table(res, sc16)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table if line.startswith("| ") and "---" not in line}
    assert rows["beta 0.8, waves of 2"].endswith("| 3.20x | yes |")
    assert rows["esc, windows of 2"].endswith("| 4.00x | no |")  # 1 pt down
    assert rows["beta 0.95, waves of 4"].endswith("| 2.67x | no |")  # too few saved
    assert "reads the answers" in rows[f"{ORACLE} 4"]
    # Better and 16x cheaper, but it draws one sample for every question: no adaptive stop to credit.
    fixed = "| 16.00x | — (stops at 1 on every question: a fixed SC@1, not adaptive) |"
    assert rows["beta 0.6, waves of 1"].endswith(fixed)
    assert "SC@16" not in rows


def test_the_headline_bench_replays_the_self_consistency_level_with_the_strategy_rule() -> None:
    from bench.adaptive import adaptive_sc

    def samples(answers: str, right: str) -> list[dict]:
        return [{"answer": a, "correct": a == right, "tokens": 10} for a in answers]

    assert adaptive_sc(samples("77777777", "7")) == (True, 40)  # unanimous first wave: stop at 4
    assert adaptive_sc(samples("78787878", "7")) == (True, 80)  # split: all 8, the first of equals wins
    assert adaptive_sc(samples("88878888", "7")) == (False, 80)  # 3-1 is not sure at 0.95: a second wave
