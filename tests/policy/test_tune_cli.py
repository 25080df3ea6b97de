"""`router tune` on synthetic results: a known optimum is found, held-out splits stay held out, files are written."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from router.policy import DEFAULT_POLICY_FILE, load_policies
from router.policy.tune_cli import Objective, Predictor, main, tune

# easy questions: single is right (10 tokens); hard ones: only sc is (100 tokens). The injected
# predictor separates them perfectly, so routing easy -> single and hard -> sc is the one setting
# that is right everywhere at 55 tokens a question (half are hard), within a 60-token budget.
POLICY_YAML = {
    "default_policy": "adaptive",
    "policies": [
        {"name": "adaptive", "description": "routed", "rule": {"kind": "threshold", "target": 0.3},
         "default_level": "single", "levels": [
             {"name": "single", "strategy": "single", "cost_tokens": 1},
             {"name": "sc", "strategy": "self_consistency", "samples": 8, "cost_tokens": 2,
              "sampling": {"temperature": 0.7, "seed": 0}},
             {"name": "refine", "strategy": "self_refine"},  # forced only
         ]},
        {"name": "greedy", "levels": [{"name": "single", "strategy": "single", "cost_tokens": 1}]},
    ],
}
P_SINGLE = {"easy": 0.9, "hard": 0.1}
P_SC = 0.95


def rows_for(split: str, n_easy: int, n_hard: int, family: str = "arith", hard_sc_right: float = 1.0,
             prefix: str = "") -> list[dict]:
    rows = []
    for kind, n in (("easy", n_easy), ("hard", n_hard)):
        for i in range(n):
            qid = f"{prefix}{split}-{kind}-{i}"
            text = f"{kind}: question {i} of {family} in {split}"
            sc_right = kind == "easy" or i < round(hard_sc_right * n)
            for level, correct, tokens in (("single", kind == "easy", 10), ("sc", sc_right, 100)):
                rows.append({"id": qid, "family": family, "source": "test", "seed": 0, "split": split,
                             "question": text, "expected": "1", "level": level, "correct": correct, "answer": "1",
                             "completion_tokens": tokens, "samples": 1, "latency_ms": 1.0})
    return rows


def dataset(hard_sc_right: float = 1.0) -> list[dict]:
    return (rows_for("train", 20, 20, hard_sc_right=hard_sc_right) + rows_for("test", 10, 10)
            + rows_for("unseen", 5, 5, family="other"))


class FakePredictor:
    """Per-level success from the words "easy"/"hard"; remembers every batch of texts it scored."""

    levels = ("single", "sc", "best_of_n")  # best_of_n: predicted, but not in the policy

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[P_SINGLE[t.split(":")[0]], P_SC, 0.5] for t in texts])

    def predictor(self, **kw) -> Predictor:
        return Predictor(levels=self.levels, predict=self, name="fake", **kw)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policies.yaml"
    policy.write_text(yaml.safe_dump(POLICY_YAML, sort_keys=False), encoding="utf-8")
    return write_jsonl(tmp_path / "results.jsonl", dataset()), policy


def policy_of(path: Path, name: str = "adaptive"):  # noqa: ANN201
    return load_policies(path).get(name)


def run(argv: list[str], capsys: pytest.CaptureFixture, predictor: Predictor | None = None) -> tuple[int, str, str]:
    rc = main(argv, predictor=predictor)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------- known optimum


def test_threshold_finds_the_known_optimum_under_a_budget(files: tuple[Path, Path]) -> None:
    results, policy_file = files
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    t = tune(rows, policy_of(policy_file), FakePredictor().predictor(), rule="threshold",
             objective=Objective("max_tokens", 60))
    assert t.routed == ("single", "sc") and t.costs == {"single": 10.0, "sc": 100.0}
    # every target in (0.1, 0.9] routes easy -> single, hard -> sc; the middle of that plateau is kept
    assert t.plateau == (0.11, 0.9)
    assert t.rule.kind == "threshold" and t.rule.target == 0.5
    assert (t.chosen.accuracy, t.chosen.mean_tokens) == (1.0, 55.0)
    assert t.chosen.shares == {"single": 0.5, "sc": 0.5}
    fit, test, unseen = t.splits
    assert [s.name for s in t.splits] == ["train", "test", "unseen"]
    assert (fit.n, test.n, unseen.n) == (40, 20, 10)
    assert fit.uniform["single"].accuracy == 0.5 and fit.uniform["sc"].mean_tokens == 100.0
    assert (fit.oracle.accuracy, fit.oracle.mean_tokens) == (1.0, 55.0)
    assert (test.adaptive.accuracy, test.adaptive.mean_tokens) == (1.0, 55.0)
    assert unseen.new_families == ("other",)
    assert t.reference == "single"  # the most accurate uniform level within 60 tokens
    assert test.claim.within_budget and test.claim.difference == 0.5
    assert test.adaptive.lo < 1.0 == test.adaptive.hi  # a Wilson interval, not a point


def test_cli_budget_relative_to_a_level(files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-tokens-x", "single:6",
                        "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert got["rule"] == {"kind": "threshold", "target": 0.5}
    assert got["budget_tokens"] == 60.0 and got["reference"] == "single"
    assert got["chosen"]["accuracy"] == 1.0
    # a 5x budget (50 tokens) cannot afford sending the hard half to sc: always single is the best there
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-tokens-x", "single:5",
                        "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert got["chosen"]["shares"] == {"single": 1.0, "sc": 0.0} and got["chosen"]["mean_tokens"] == 10.0


def test_utility_rule_finds_the_known_optimum(files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--rule", "utility",
                        "--max-mean-tokens", "60", "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    # easy: 0.9 - 0.01 lam > 0.95 - 0.1 lam when lam > 0.56; hard: sc while 0.85 > 0.09 lam, lam < 9.4
    assert got["rule"]["kind"] == "utility" and 0.56 < got["rule"]["lambda"] < 9.4
    assert got["chosen"]["accuracy"] == 1.0 and got["chosen"]["mean_tokens"] == 55.0
    assert got["splits"][0]["sweep"][-1]["setting"] == "inf"  # JSON has no infinity: the string


def test_min_accuracy_takes_the_cheapest_setting_reaching_it(files: tuple[Path, Path],
                                                             capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--min-accuracy", "0.9",
                        "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert (got["chosen"]["accuracy"], got["chosen"]["mean_tokens"]) == (1.0, 55.0)  # not always-sc's 100
    assert got["reference"] == "sc"  # the cheapest uniform level reaching 0.9
    assert got["splits"][1]["claim"]["reached"] is True


def test_min_accuracy_out_of_reach_says_so_and_takes_the_most_accurate(tmp_path: Path, files: tuple[Path, Path],
                                                                       capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    results = write_jsonl(tmp_path / "half.jsonl", dataset(hard_sc_right=0.5))  # best possible on train: 0.75
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--min-accuracy", "0.9"],
                       capsys, FakePredictor().predictor())
    assert rc == 0, err
    assert "no setting reaches accuracy 0.9 on train (best 0.750); the most accurate is chosen" in out
    assert "adaptive target=0.5" in out


# ----------------------------------------------------------------------------- honest splits


def test_fit_and_report_questions_are_disjoint(files: tuple[Path, Path]) -> None:
    results, policy_file = files
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    fake = FakePredictor()
    t = tune(rows, policy_of(policy_file), fake.predictor(), objective=Objective("max_tokens", 60))
    by_split = {r["split"]: set() for r in rows}
    for r in rows:
        by_split[r["split"]].add(r["question"])
    # the predictor scored the fit split once and each report split once, never a question of another split
    assert [set(c) for c in fake.calls] == [by_split["train"], by_split["test"], by_split["unseen"]]
    assert {s.name: s.n for s in t.splits} == {"train": 40, "test": 20, "unseen": 10}


def test_a_question_in_two_splits_is_refused(tmp_path: Path, files: tuple[Path, Path],
                                             capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    rows = dataset()
    leaked = [dict(r, split="test") for r in rows if r["id"] == "train-hard-0"]  # same id, other split
    results = write_jsonl(tmp_path / "leak.jsonl", rows + leaked)
    rc, _, err = run(["--results", str(results), "--policy-file", str(policy_file)], capsys,
                     FakePredictor().predictor())
    assert rc == 2 and "train-hard-0 (test / train)" in err and "one split" in err


def test_fit_split_as_report_split_is_refused(files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, _, err = run(["--results", str(results), "--policy-file", str(policy_file), "--report-splits", "train,test"],
                     capsys, FakePredictor().predictor())
    assert rc == 2 and "cannot also be a report split" in err


def test_report_questions_the_classifier_trained_on_are_left_out(files: tuple[Path, Path]) -> None:
    results, policy_file = files
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    trained = frozenset({"test-easy-0", "test-hard-0"})
    texts = frozenset({"hard: question 1 of arith in test"})  # same text as a training question, other id
    t = tune(rows, policy_of(policy_file), FakePredictor().predictor(trained_ids=trained, trained_texts=texts),
             objective=Objective("max_tokens", 60))
    test = t.splits[1]
    assert test.n == 17 and test.left_out_trained == 3
    assert any("test: left out 3 of 20 question(s) the fake was trained on" in n for n in t.notes)


# ---------------------------------------------------------------------------- written files


def test_write_policy_and_png(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    before = policy_file.read_text()
    out_yaml, png = tmp_path / "out" / "tuned.yaml", tmp_path / "out" / "frontier.png"
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-mean-tokens", "60",
                        "--write-policy", str(out_yaml), "--png", str(png)], capsys, FakePredictor().predictor())
    assert rc == 0, err
    assert policy_file.read_text() == before  # the input file is left alone
    tuned = load_policies(out_yaml)
    adaptive = tuned.get("adaptive")
    assert adaptive.rule.kind == "threshold" and adaptive.rule.target == 0.5
    assert adaptive.level("single").cost_tokens == 10.0 and adaptive.level("sc").cost_tokens == 100.0
    assert adaptive.level("refine").cost_tokens == 0.0  # forced-only levels are untouched
    assert tuned.get("greedy").rule.kind == "fixed" and tuned.default == "adaptive"
    assert out_yaml.read_text().startswith("# Tuned by `router tune`")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    assert f"wrote policy file {out_yaml}" in out and f"wrote frontier {png}" in out
    assert not list(out_yaml.parent.glob(".*.tmp"))


def test_text_report(files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-mean-tokens", "60"],
                       capsys, FakePredictor().predictor())
    assert rc == 0, err
    assert "routed levels, cost = train mean completion tokens: single 10, sc 100" in out
    assert "(target 0.11 ... 0.9 give the same outcome on train; the middle is kept)" in out
    assert "on test: adaptive 1.00 [0.84, 1.00] at 55 tokens vs single 0.50 [0.30, 0.70] at 10 tokens: " \
           "+0.50 accuracy" in out
    assert "budget 60 tokens: met" in out
    assert "10 question(s) from families not in train: other" in out


def test_policy_rows_are_measured_points_not_tuned_on(tmp_path: Path, files: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    rows = dataset()
    routed = [dict(r, level="policy:adaptive", correct=True, completion_tokens=70)
              for r in rows if r["level"] == "single" and r["split"] == "test"]
    results = write_jsonl(tmp_path / "r.jsonl", rows)
    measured = write_jsonl(tmp_path / "m.jsonl", routed)
    rc, out, err = run(["--results", str(results), "--results", str(measured), "--policy-file", str(policy_file),
                        "--max-mean-tokens", "60", "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert got["chosen"]["accuracy"] == 1.0
    assert got["splits"][1]["measured"]["policy:adaptive"] == {"accuracy": 1.0, "lo": pytest.approx(0.8389, abs=1e-4),
                                                               "hi": 1.0, "mean_tokens": 70.0, "n": 20}
    assert "policy:adaptive" not in got["splits"][0]["measured"]


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("argv", "message"), [
    (["--results", "{tmp}/missing.jsonl"], "results file {tmp}/missing.jsonl does not exist"),
    (["--results", "{tmp}"], "results file {tmp} is a directory"),
    (["--results", "{results}", "--policy", "nope"], "unknown policy 'nope'"),
    (["--results", "{results}", "--policy", "greedy"], "policy 'greedy' routes 1 level(s) (single)"),
    (["--results", "{results}", "--fit-split", "nope"], "fit split 'nope' has no complete questions"),
    (["--results", "{results}", "--report-splits", "test,nope"], "report split 'nope' has no complete questions"),
    (["--results", "{incomplete}"], "no complete questions"),
    (["--results", "{results}", "--max-tokens-x", "refine:2"], "level 'refine' is not a routed level"),
    (["--results", "{results}", "--max-tokens-x", "single"], "LEVEL:X"),
    (["--results", "{results}", "--min-accuracy", "2"], "--min-accuracy must be within [0, 1]"),
    (["--results", "{results}", "--oof", "1"], "--oof needs 2 <= K"),
])
def test_clear_errors(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture, argv: list[str],
                      message: str) -> None:
    results, policy_file = files
    half = [r for r in dataset() if (r["level"] == "single") == r["id"].endswith(("0", "2", "4", "6", "8"))]
    incomplete = write_jsonl(tmp_path / "incomplete.jsonl", half)  # every question has one level only
    names = {"tmp": tmp_path, "results": results, "incomplete": incomplete}
    rc, out, err = run([a.format(**names) for a in argv] + ["--policy-file", str(policy_file)], capsys,
                       FakePredictor().predictor())
    assert rc == 2 and out == ""
    assert err.startswith("router tune: ") and message.format(**names) in err


def test_torn_lines_are_skipped_and_counted(tmp_path: Path, files: tuple[Path, Path],
                                            capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    results = write_jsonl(tmp_path / "r.jsonl", dataset())
    with results.open("a") as f:
        f.write('{"id": "torn", "lev')
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file)], capsys,
                       FakePredictor().predictor())
    assert rc == 0, err
    assert "skipped 1 line(s) that are not result rows" in out


# ----------------------------------------------------------------------- real classifier, OOF


def test_out_of_fold_predictions_from_fresh_classifiers(files: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    fake = FakePredictor()
    params = {"C": 1.0, "word_ngrams": (1, 2), "char_ngrams": (1, 4), "min_df": 2, "cv_folds": 3, "calibrate": True,
              "seed": 0}
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-mean-tokens", "60",
                        "--oof", "4", "--json"], capsys, fake.predictor(hyperparameters=params))
    assert rc == 0, err
    got = json.loads(out)
    assert got["splits"][0]["predictions"].startswith("4-fold out-of-fold, fresh classifiers (C=1.0")
    # the words "easy"/"hard" are learnable: out-of-fold routing is as good as the injected one
    assert got["chosen"]["accuracy"] == 1.0 and got["chosen"]["mean_tokens"] == 55.0
    assert [s["predictions"] for s in got["splits"][1:]] == ["fake", "fake"]
    assert len(fake.calls) == 2  # only the report splits went to the injected predictor


def test_real_classifier_on_generated_questions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from router.difficulty.scorer import DifficultyScorer
    from router.evaluation.datasets import generated

    levels = DifficultyScorer().levels
    rng = random.Random(7)
    rows = []
    for family, split in (("addition", "train"), ("subtraction", "train"), ("comparison", "test"),
                          ("successor", "unseen")):
        for q in generated(family, 30 if split == "train" else 15, seed=101):
            for j, level in enumerate(levels):
                rows.append({"id": q.id, "family": q.family, "split": split, "question": q.text, "level": level,
                             "correct": rng.random() < 0.3 + 0.2 * j, "completion_tokens": 40 + 400 * j
                             + rng.randint(0, 30)})
    results = write_jsonl(tmp_path / "gen.jsonl", rows)
    png, out_yaml = tmp_path / "f.png", tmp_path / "p.yaml"
    rc, out, err = run(["--results", str(results), "--policy-file", str(DEFAULT_POLICY_FILE), "--png", str(png),
                        "--write-policy", str(out_yaml)], capsys)
    assert rc == 0, err
    assert "predictions: classifier " in out and "claims:" in out and "on unseen: adaptive" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1024
    tuned = load_policies(out_yaml).get("adaptive")
    assert tuned.rule.kind == "threshold"
    assert [tuned.level(n).cost_tokens > 0 for n in levels] == [True] * len(levels)


# ------------------------------------------------------------------------ bad output paths


def test_write_policy_to_a_directory_is_refused_before_any_work(tmp_path: Path, files: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    target = tmp_path / "outdir"
    target.mkdir()
    fake = FakePredictor()
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--write-policy", str(target)],
                       capsys, fake.predictor())
    assert rc == 2 and out == "" and f"--write-policy {target} is a directory" in err
    assert fake.calls == [] and list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize(("flag", "name", "message"), [
    ("--png", "f.xyz", "matplotlib cannot write '.xyz' images"),
    ("--png", "a-file/f.png", "a-file is not a directory"),
    ("--write-policy", "a-file/p.yaml", "a-file is not a directory"),
    ("--write-policy", "fifo", "is not a regular file"),  # a rename would put a file in place of it
])
def test_bad_output_paths_are_refused_before_anything_is_written(tmp_path: Path, files: tuple[Path, Path],
                                                                 capsys: pytest.CaptureFixture, flag: str, name: str,
                                                                 message: str) -> None:
    import os

    results, policy_file = files
    (tmp_path / "a-file").write_text("not a directory")
    os.mkfifo(tmp_path / "fifo")
    good = tmp_path / "good.yaml"
    other = ["--png", str(tmp_path / "f.png")] if flag == "--write-policy" else ["--write-policy", str(good)]
    fake = FakePredictor()
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), flag, str(tmp_path / name),
                        *other], capsys, fake.predictor())
    assert rc == 2 and out == "" and err.startswith("router tune: ") and message in err
    assert fake.calls == []  # refused before tuning
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "fifo", "policies.yaml", "results.jsonl"]
    assert (tmp_path / "fifo").is_fifo()


def test_a_failed_write_leaves_no_output_and_no_temporary_file(tmp_path: Path, files: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def full_disk(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    results, policy_file = files
    out_dir = tmp_path / "out"
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--write-policy",
                        str(out_dir / "good.yaml"), "--png", str(out_dir / "f.png")], capsys,
                       FakePredictor().predictor())
    assert rc == 2 and out == ""
    assert err == f"router tune: cannot write {out_dir / 'f.png'}: No space left on device\n"
    assert list(out_dir.iterdir()) == []  # the policy file was not written either: both or neither


def test_png_without_a_suffix_says_the_file_it_wrote(tmp_path: Path, files: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--png",
                        str(tmp_path / "frontier")], capsys, FakePredictor().predictor())
    assert rc == 0, err
    written = tmp_path / "frontier.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "frontier").exists()
    assert out.endswith(f"\nwrote frontier {written}\n")


# ---------------------------------------------------------------------------- bad input rows


def test_rows_with_bad_values_are_skipped_and_named_not_counted(tmp_path: Path, files: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    rows = dataset()
    bad = {("train-hard-0", "single"): {"correct": "false"},  # bool("false") is True
           ("train-hard-1", "sc"): {"completion_tokens": math.nan},
           ("train-hard-2", "single"): {"completion_tokens": -5}}
    lines = []
    for row in rows:
        row = row | bad.get((row["id"], row["level"]), {})
        lines.append(json.dumps(row).encode())
    lines.insert(3, b'{"id": "\xff\xfe", "level": "single"}')  # not UTF-8
    results = tmp_path / "r.jsonl"
    results.write_bytes(b"\n".join(lines) + b"\n")
    numbers = {k: 1 + next(i for i, r in enumerate(rows) if (r["id"], r["level"]) == k) for k in bad}
    numbers = {k: n + (n > 3) for k, n in numbers.items()}  # after the inserted line
    rc, out, err = run(["--results", str(results), "--policy-file", str(policy_file), "--max-mean-tokens", "60",
                        "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert got["incomplete"] == 3 and got["split_sizes"]["train"] == 37
    assert got["costs"] == {"single": 10.0, "sc": 100.0}
    assert got["splits"][0]["uniform"]["single"]["accuracy"] == pytest.approx(20 / 37)  # the 17 hard ones wrong
    note = next(n for n in got["notes"] if "skipped 4 line(s)" in n)
    assert f"{results}:4: not UTF-8 text" in note
    assert f"{results}:{numbers['train-hard-0', 'single']}: 'correct' must be true or false, got \"false\"" in note
    assert f"{results}:{numbers['train-hard-1', 'sc']}: 'completion_tokens' must be a whole number >= 0, got NaN" \
           in note
    assert note.endswith("; 1 more")  # the negative count, past the first three


def test_a_file_of_no_result_rows_says_why(tmp_path: Path, files: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture) -> None:
    _, policy_file = files
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    rc, out, err = run(["--results", str(binary), "--policy-file", str(policy_file)], capsys,
                       FakePredictor().predictor())
    assert rc == 2 and out == ""
    assert err == f"router tune: no result rows in {binary} ({binary}:1: not UTF-8 text)\n"


def test_rows_in_two_files_are_named(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    results, policy_file = files
    again = write_jsonl(tmp_path / "again.jsonl", [dict(r, correct=not r["correct"]) for r in dataset()[:6]])
    rc, out, err = run(["--results", str(results), "--results", str(again), "--policy-file", str(policy_file),
                        "--max-mean-tokens", "60", "--json"], capsys, FakePredictor().predictor())
    assert rc == 0, err
    got = json.loads(out)
    assert f"WARNING: 6 (question, level) row(s) of {again} are also in {results}: the rows of {results} are used" \
           in got["notes"]
    assert got["chosen"]["accuracy"] == 1.0  # the first file's rows
