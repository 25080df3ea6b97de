"""Experiment assignment: deterministic across processes, close to the weights, salt reshuffles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from scipy.stats import chisquare

from router.policy import Arm, Experiment

EXP = Experiment("e", (Arm("control", "greedy", 1), Arm("treatment", "adaptive", 3)), salt="s1")


def test_assignment_is_the_same_in_another_process() -> None:
    units = [f"user-{i}" for i in range(200)]
    here = [EXP.assign(u).name for u in units]
    code = (
        "import json, sys\n"
        "from router.policy import Arm, Experiment\n"
        "e = Experiment('e', (Arm('control', 'greedy', 1), Arm('treatment', 'adaptive', 3)), salt='s1')\n"
        "print(json.dumps([e.assign(f'user-{i}').name for i in range(200)]))\n"
    )
    # a fresh interpreter with another hash seed: Python's hash() would differ, sha256 does not
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=str(_root()))
    assert json.loads(out.stdout) == here


def test_shares_match_the_weights_on_10k_units() -> None:
    counts = Counter(EXP.assign(f"unit-{i}").name for i in range(10_000))
    observed = [counts["control"], counts["treatment"]]
    result = chisquare(observed, f_exp=[2500, 7500])
    assert result.pvalue > 0.001, (observed, result)
    three = Experiment("three", (Arm("a", "x", 1), Arm("b", "x", 1), Arm("c", "x", 2)))
    counts3 = Counter(three.assign(str(i)).name for i in range(10_000))
    assert chisquare([counts3["a"], counts3["b"], counts3["c"]], f_exp=[2500, 2500, 5000]).pvalue > 0.001


def test_a_unit_stays_in_its_arm_and_the_salt_reshuffles() -> None:
    assert all(EXP.assign("alice") == EXP.assign("alice") for _ in range(10))
    resalted = Experiment(EXP.name, EXP.arms, salt="s2")
    moved = sum(EXP.assign(f"u{i}") != resalted.assign(f"u{i}") for i in range(2000))
    # independent assignment with shares 1/4, 3/4 moves 2 * 0.25 * 0.75 = 37.5% of units
    assert 0.30 < moved / 2000 < 0.45


def test_bucket_is_uniform_enough() -> None:
    buckets = [int(EXP.bucket(str(i)) * 10) for i in range(10_000)]
    assert chisquare([buckets.count(b) for b in range(10)]).pvalue > 0.001


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
