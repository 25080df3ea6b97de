"""``router ab report``: statistics checked against scipy on known data, verdicts, the CLI's table, PNG and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from router.domain import Flags, Outcome, Plan, Timings, Usage
from router.engine import SamplingParams
from router.evaluation.ab import (
    BETTER,
    NOT_SIGNIFICANT,
    WORSE,
    ArmData,
    ReportError,
    ab_report,
    build_report,
    format_table,
    minimum_detectable_effect,
    plot_report,
    required_n,
    score_summary,
    welch_test,
    wilson_interval,
)
from router.evaluation.ab_cli import main
from router.store import SqliteStore

EXPERIMENT = "adaptive-vs-greedy"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plan(experiment: str, arm: str) -> Plan:
    return Plan("single", "single", 1, SamplingParams(max_new_tokens=8), "fixed", "v1", "test",
                experiment=experiment, arm=arm)


def outcome(completion: int, prompt: int, total_ms: float, degraded: bool) -> Outcome:
    return Outcome("x", "x", [], {}, Usage(prompt, completion, 1, 1), Flags(degraded=degraded),
                   Timings(0.0, 0.0, 0.0, total_ms))


def arm_rows(rng: np.random.Generator, n: int, p: float, tokens: int, latency: float) -> dict[str, np.ndarray]:
    """One arm's answered requests: a 0/1 score (nan: no feedback), tokens, latency, degraded flag."""
    scores = (rng.random(n) < p).astype(float)
    scores[rng.random(n) < 0.2] = np.nan
    return {
        "score": scores,
        "completion": rng.poisson(tokens, n),
        "prompt": rng.integers(20, 80, n),
        "total_ms": rng.gamma(4.0, latency / 4, n),
        "degraded": rng.random(n) < 0.1,
    }


@pytest.fixture(scope="module")
def data() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return {"control": arm_rows(rng, 70, 0.45, 50, 1400.0), "treatment": arm_rows(rng, 60, 0.85, 130, 3000.0)}


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory, data: dict[str, dict[str, np.ndarray]]) -> Path:
    """A store as the server leaves it: an older experiment, requests in no experiment, cancelled requests,
    label-only feedback and feedback under another key, none of which may count."""
    path = tmp_path_factory.mktemp("ab") / "router.sqlite3"
    store = SqliteStore(path)
    futures = []
    for i in range(4):
        store.record_decision(f"old{i}", plan("old-experiment", "control"), outcome(1, 1, 1.0, False))
        futures.append(store.add_feedback(f"old{i}", "correct", 0.0, "", ""))
        store.record_decision(f"none{i}", plan("", ""), outcome(1, 1, 1.0, False))
    store.flush(timeout=10)
    for arm, rows in data.items():
        for i in range(len(rows["score"])):
            rid = f"{arm}-{i}"
            store.record_decision(rid, plan(EXPERIMENT, arm), outcome(
                int(rows["completion"][i]), int(rows["prompt"][i]), float(rows["total_ms"][i]),
                bool(rows["degraded"][i])))
            if not math.isnan(rows["score"][i]):
                futures.append(store.add_feedback(rid, "correct", float(rows["score"][i]), "", ""))
            elif i % 2:
                futures.append(store.add_feedback(rid, "correct", None, "thumbs up", ""))  # label only
            futures.append(store.add_feedback(rid, "helpful", 5.0, "", ""))
        for i in range(3):
            store.record_decision(f"{arm}-cancelled-{i}", plan(EXPERIMENT, arm), None)
            futures.append(store.add_feedback(f"{arm}-cancelled-{i}", "correct", 1.0, "", ""))  # no answer: ignored
    assert all(f.result(timeout=10) for f in futures)
    assert store.close(timeout=10)
    return path


def scored(rows: dict[str, np.ndarray]) -> np.ndarray:
    return rows["score"][~np.isnan(rows["score"])]


# -- the report from a store, against scipy -----------------------------------------------------------
def test_store_report_matches_scipy(store_file: Path, data: dict[str, dict[str, np.ndarray]]) -> None:
    report = ab_report(store_file)  # the most recent experiment, control by name
    assert report.experiment == EXPERIMENT and report.control == "control"
    assert [a.arm for a in report.arms] == ["control", "treatment"]
    assert "old-experiment" in report.notes[0]
    for name, rows in data.items():
        arm, scores = report.arm(name), scored(rows)
        assert (arm.requests, arm.cancelled, arm.scored) == (len(rows["score"]), 3, len(scores))
        assert arm.score is not None and arm.score.method == "wilson"
        assert arm.score.mean == pytest.approx(scores.mean())
        ci = stats.binomtest(int(scores.sum()), len(scores)).proportion_ci(0.95, method="wilson")
        assert (arm.score.low, arm.score.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
        assert arm.completion_tokens == pytest.approx(rows["completion"].mean())
        assert arm.total_tokens == pytest.approx((rows["completion"] + rows["prompt"]).mean())
        assert arm.latency_p50_ms == pytest.approx(float(np.median(rows["total_ms"])))
        assert arm.latency_p95_ms == pytest.approx(float(np.quantile(rows["total_ms"], 0.95)))
        assert arm.degraded_share == pytest.approx(rows["degraded"].mean())

    treated, control = scored(data["treatment"]), scored(data["control"])
    ref = stats.ttest_ind(treated, control, equal_var=False)
    ref_ci = ref.confidence_interval(0.95)
    c = report.comparison("treatment")
    assert c.welch is not None
    assert c.welch.diff == pytest.approx(treated.mean() - control.mean())
    assert c.welch.t == pytest.approx(ref.statistic)
    assert c.welch.df == pytest.approx(ref.df)
    assert c.welch.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (c.welch.low, c.welch.high) == pytest.approx((ref_ci.low, ref_ci.high))
    assert c.verdict == BETTER and ref.pvalue < 0.05
    tokens = data["treatment"]["completion"].mean() / data["control"]["completion"].mean() - 1
    assert c.completion_tokens_change == pytest.approx(tokens)


def test_another_key_control_and_alpha(store_file: Path, data: dict[str, dict[str, np.ndarray]]) -> None:
    report = ab_report(store_file, EXPERIMENT, control="treatment", alpha=0.10)
    assert report.control == "treatment" and report.comparison("control").verdict == WORSE
    treated, control = scored(data["treatment"]), scored(data["control"])
    ci = stats.ttest_ind(control, treated, equal_var=False).confidence_interval(0.90)
    c = report.comparison("control").welch
    assert c is not None and (c.low, c.high) == pytest.approx((ci.low, ci.high))
    # Every answered request has helpful = 5: a constant score, the same in both arms.
    helpful = ab_report(store_file, EXPERIMENT, key="helpful")
    assert helpful.arm("treatment").scored == len(data["treatment"]["score"])
    assert helpful.comparison("treatment").verdict == NOT_SIGNIFICANT


# -- statistics on known data --------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (1, 1), (417, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    for confidence in (0.95, 0.9):
        ref = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
        assert wilson_interval(k, n, confidence) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_t_interval_for_scores_that_are_not_0_or_1() -> None:
    ratings = np.array([4, 5, 3, 4, 2, 5, 5, 4, 3, 4.5])
    summary = score_summary(ratings)
    assert summary is not None and summary.method == "t"
    ref = stats.t.interval(0.95, len(ratings) - 1, loc=ratings.mean(), scale=stats.sem(ratings))
    assert (summary.low, summary.high) == pytest.approx(ref)
    assert summary.sd == pytest.approx(ratings.std(ddof=1))
    assert score_summary([]) is None


def test_welch_matches_scipy_with_unequal_sizes_and_variances() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 2.0, 40), rng.normal(0.0, 0.5, 15)
    for confidence in (0.95, 0.99):
        ours = welch_test(a, b, confidence)
        ref = stats.ttest_ind(a, b, equal_var=False)
        ci = ref.confidence_interval(confidence)
        assert ours is not None
        assert (ours.t, ours.df, ours.p_value) == pytest.approx((ref.statistic, ref.df, ref.pvalue))
        assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high))
    assert welch_test([1.0], b) is None


def test_required_n_formula() -> None:
    # sd 0.5 in both arms (p = 0.5), a difference of 0.1, two-sided alpha 0.05, power 0.8.
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert z == pytest.approx(2.8016, abs=1e-4)
    assert required_n(0.5, 0.5, 0.1) == math.ceil(z**2 * 0.5 / 0.01) == 393
    assert required_n(0.5, 0.5, -0.1) == 393  # the sign does not matter
    assert required_n(0.5, 0.5, 0.1, alpha=0.01, power=0.9) == math.ceil(
        (stats.norm.ppf(0.995) + stats.norm.ppf(0.9)) ** 2 * 0.5 / 0.01)
    assert required_n(0.5, 0.5, 0.0) is None
    # With that many per arm, the minimum detectable effect is (just under) the difference.
    assert minimum_detectable_effect(0.5, 0.5, 393, 393) == pytest.approx(0.1, rel=2e-3)
    assert minimum_detectable_effect(0.5, 0.5, 393, 393) <= 0.1


# -- verdicts ----------------------------------------------------------------------------------------------
def binary(ones: int, n: int) -> np.ndarray:
    return np.array([1.0] * ones + [0.0] * (n - ones))


def arm(scores: np.ndarray, requests: int = 200) -> ArmData:
    ones = np.ones(requests)
    return ArmData(scores, ones * 10, ones * 5, np.arange(requests, dtype=float), ones * 0)


def test_verdict_better_and_worse() -> None:
    report = build_report("e", {"control": arm(binary(100, 200)), "up": arm(binary(150, 200)),
                                "down": arm(binary(55, 200))})
    assert report.comparison("up").verdict == BETTER and report.comparison("up").welch.diff == pytest.approx(0.25)
    assert report.comparison("down").verdict == WORSE
    assert report.comparison("down").detail.startswith("worse: -0.225 (p < 0.001)")
    assert report.comparison("up").required_n is None


def test_verdict_not_yet_significant_says_how_many_are_needed() -> None:
    control, treated = binary(100, 200), binary(108, 200)
    report = build_report("e", {"control": arm(control), "b": arm(treated)})
    c = report.comparison("b")
    assert c.verdict == NOT_SIGNIFICANT and c.welch is not None and c.welch.p_value > 0.05
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    expected = math.ceil(z**2 * (treated.var(ddof=1) + control.var(ddof=1)) / 0.04**2)
    assert c.required_n == expected and f"about {expected} scored requests per arm" in c.detail

    same = build_report("e", {"control": arm(control), "b": arm(binary(100, 200))}).comparison("b")
    assert same.verdict == NOT_SIGNIFICANT and same.required_n is None
    assert same.mde == pytest.approx(z * math.sqrt(2 * control.var(ddof=1) / 200))
    assert f"±{same.mde:.3f}" in same.detail


def test_too_little_data_is_not_significant_and_still_plots(tmp_path: Path) -> None:
    report = build_report("e", {"control": arm(binary(3, 5)), "one": arm(binary(1, 1)), "none": arm(np.array([]))})
    for name in ("one", "none"):
        c = report.comparison(name)
        assert c.verdict == NOT_SIGNIFICANT and c.welch is None and "at least 2 scored requests" in c.detail
    assert report.arm("none").score is None
    assert "none" in format_table(report)
    png = plot_report(report, tmp_path / "sub" / "small.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_one_arm_alone_says_there_is_nothing_to_compare(tmp_path: Path) -> None:
    report = build_report("e", {"control": arm(binary(3, 5))})
    assert report.comparisons == ()
    assert any("nothing to compare" in n for n in report.notes)
    assert "nothing to compare" in format_table(report)
    assert plot_report(report, tmp_path / "one.png").read_bytes()[:8] == PNG_MAGIC


def test_build_report_refuses_bad_input() -> None:
    with pytest.raises(ReportError, match="no arm 'x'"):
        build_report("e", {"control": arm(binary(1, 2))}, control="x")
    with pytest.raises(ReportError, match="no feedback with key 'correct'"):
        build_report("e", {"control": arm(np.array([])), "b": arm(np.array([]))})
    with pytest.raises(ReportError, match="alpha"):
        build_report("e", {"control": arm(binary(1, 2))}, alpha=1.5)


# -- the command line -----------------------------------------------------------------------------------
def test_cli_prints_a_table_and_writes_a_png(
    store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", str(store_file), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("control ") for line in lines)
    assert any(line.startswith("treatment ") for line in lines)
    assert any(line.startswith("treatment vs control") and "better" in line for line in lines)
    png = tmp_path / f"ab_{EXPERIMENT}.png"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1024


def test_cli_json(store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "x" / "report.png"
    assert main(["--db", str(store_file), "--experiment", "old-experiment", "--json", "--png", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["experiment"] == "old-experiment" and doc["comparisons"] == []
    assert doc["arms"][0]["scored"] == 4 and doc["arms"][0]["score"]["mean"] == 0.0
    assert png.stat().st_size > 1024


def test_report_while_the_store_is_open(tmp_path: Path) -> None:
    """Read-only: a report runs beside a live store, which keeps writing afterwards."""
    path = tmp_path / "live.sqlite3"
    store = SqliteStore(path)
    try:
        for i in range(4):
            store.record_decision(f"r{i}", plan(EXPERIMENT, "control" if i % 2 else "b"), outcome(3, 4, 5.0, False))
            store.add_feedback(f"r{i}", "correct", float(i % 2), "", "")
        assert store.flush(timeout=10)
        assert main(["--db", str(path), "--no-png"]) == 0
        assert store.record_decision("r9", plan(EXPERIMENT, "b"), outcome(3, 4, 5.0, False))
        assert store.add_feedback("r9", "correct", 1.0, "", "").result(timeout=10)
    finally:
        store.close(timeout=10)
    assert ab_report(path).arm("b").scored == 3
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "{tmp}/missing.sqlite3"], "no store at"),
        (["--db", "{empty}"], "no decision in"),
        (["--db", "{store}", "--experiment", "nope"], "no experiment 'nope'"),
        (["--db", "{store}", "--key", "stars"], "no feedback with key 'stars'"),
        (["--db", "{store}", "--control", "nope"], "no arm 'nope'"),
    ],
)
def test_cli_errors(
    args: list[str], message: str, store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.sqlite3"
    store = SqliteStore(empty)
    store.record_decision("r1", plan("", ""), outcome(1, 1, 1.0, False))  # not in an experiment
    store.close(timeout=10)
    argv = [a.format(tmp=tmp_path, empty=empty, store=store_file) for a in args]
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("router ab report: ") and message in err
    assert not list(tmp_path.glob("*.png"))


def test_unknown_key_names_the_keys_there(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(store_file), "--key", "stars", "--no-png"]) == 2
    assert "scored keys here: correct, helpful" in capsys.readouterr().err
