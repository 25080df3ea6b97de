"""`router eval`: dataset specs, checkers, resume, bad lines and checker errors, in process and through a server.

The tiny random model answers (it never gets a question right), so grading is tested with
deterministic fake responses and the runs test what is written, skipped and counted.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reasoning_gym as rg

from router.engine import Engine
from router.evaluation import eval_cli
from router.evaluation.datasets import REASONING_GYM, generated, reasoning_gym
from router.evaluation.runner import repair_tail
from router.evaluation.sources import CHECKERS, SpecError, load, rg_config
from router.evaluation.targets import Answered, InProcess
from router.policy.ladder import PolicySet
from router.policy.loader import load_policies

POLICIES = """\
default_policy: fixed
policies:
  - name: fixed
    rule: {kind: fixed}
    levels:
      - {name: single, strategy: single, samples: 1, sampling: {max_new_tokens: 4}}
      - {name: self_consistency, strategy: self_consistency, samples: 2,
         sampling: {temperature: 0.7, seed: 0, max_new_tokens: 4}, options: {wave: 2}}
  - name: adaptive
    rule: {kind: threshold, target: 0.0}
    levels:
      - {name: single, strategy: single, samples: 1, cost_tokens: 20, sampling: {max_new_tokens: 4}}
      - {name: self_consistency, strategy: self_consistency, samples: 2, cost_tokens: 100,
         sampling: {temperature: 0.7, seed: 0, max_new_tokens: 4}, options: {wave: 2}}
experiments: []
"""


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policies") / "policies.yaml"
    path.write_text(POLICIES)
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


class Scripted:
    """A target whose every answer is ``text``: grading becomes deterministic."""

    name = "scripted"

    def __init__(self, text: str, model: str = "", spec: str = "") -> None:
        self.text = text
        self.model = model
        self.spec = spec
        self.calls = 0

    def check(self, policy: str, levels: list[str], route: bool = False) -> str:
        return policy or "fixed"

    def answer(self, text: str, *, policy: str, level: str) -> Answered:
        self.calls += 1
        return Answered(text=self.text, decision_level=level or "single", difficulty=None, predicted={},
                        policy=f"{policy}@v", prompt_tokens=5, completion_tokens=3, samples=1, model_calls=1,
                        latency_ms=1.0, truncated=False, model=self.model, spec=self.spec)


# ------------------------------------------------------------------------------------ datasets


def test_rg_spec_overrides_make_the_dataset_reasoning_gym_makes() -> None:
    spec = "rg:basic_arithmetic?min_digits=2&max_digits=3&operators=+,-&allow_negation=false"
    items = load([spec], n=6, seed=5).items
    config = {**REASONING_GYM["basic_arithmetic"], "min_digits": 2, "max_digits": 3, "operators": ["+", "-"],
              "allow_negation": False}
    assert rg_config("basic_arithmetic", {"min_digits": "2", "max_digits": "3", "operators": "+,-",
                                          "allow_negation": "false"}) == config
    direct = rg.create_dataset("basic_arithmetic", size=6, seed=5, **config)
    assert [i.question.text for i in items] == [e["question"] for e in direct]
    assert [i.question.answer for i in items] == [str(e["answer"]) for e in direct]
    assert direct.config.min_digits == 2 and direct.config.allow_negation is False
    # another configuration never shares ids with the project's own (the labels' ids)
    assert all(i.question.id.startswith("rg-basic_arithmetic~") and i.question.id.endswith(f"-5-{k}")
               for k, i in enumerate(items))
    plain = load(["rg:gcd"], n=3, seed=5).items
    assert [i.question.id for i in plain] == [q.id for q in reasoning_gym("gcd", 3, seed=5)]


@pytest.mark.parametrize(("spec", "problem"), [
    ("rg:no_such_task", "unknown reasoning-gym task"),
    ("rg:gcd?min_valu=3", "unknown config key 'min_valu'"),
    ("rg:gcd?min_value=three", "min_value='three'"),
    ("rg:gcd?seed=3", "comes from --seed"),
    ("rg:gcd?min_value=40&max_value=10", "refused"),
    ("gen:no_such_family", "unknown generated family"),
    ("csv:x.csv", "unknown source 'csv'"),
])
def test_bad_specs_are_refused_before_any_work(spec: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        load([spec], n=2)


def test_generated_ids_are_fixed_and_shared_with_difficulty_runs() -> None:
    items = load(["gen:addition", "gen:comparison"], n=3, seed=4).items
    assert [i.question.id for i in items] == [f"{f}-4-{k}" for f in ("addition", "comparison") for k in range(3)]
    assert [i.question for i in items[:3]] == generated("addition", 3, seed=4)
    assert [i.question.id for i in load(["gen:addition"], n=3, seed=4).items] == [i.question.id for i in items[:3]]


def test_rg_questions_are_graded_by_the_task_scorer() -> None:
    item = load(["rg:gcd"], n=1, seed=0).items[0]
    right = item.question.answer
    assert item.checker == "rg"
    assert item.grade(f"<answer>{right}</answer>") == (right, True)
    assert item.grade(f"So the answer is {right}.") == (right, True)
    assert item.grade(f"<answer>{int(right) + 1}</answer>")[1] is False
    assert item.grade("I do not know.")[1] is False


@pytest.mark.parametrize(("checker", "answer", "choices", "response", "correct"), [
    ("number", "42", [], "6 * 7 = 42, so the answer is 42.", True),
    ("number", "42", [], "The answer is 41.", False),
    ("number", "0.5", [], "It is 1/2.", True),
    ("exact", "Paris", [], "Let me think.\nParis.", True),
    ("exact", "Paris", [], "Lyon", False),
    ("choice", "B", ["A", "B", "C"], "The answer is (B).", True),
    ("choice", "B", ["A", "B", "C"], "The answer is (C).", False),
    ("math", "\\frac{1}{2}", [], "So we get \\boxed{0.5}", True),
    ("math", "x^2", [], "\\boxed{x^3}", False),
])
def test_checkers_grade_responses(tmp_path: Path, checker: str, answer: str, choices: list[str], response: str,
                                  correct: bool) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "q?", "answer": answer, "choices": choices,
                                               "checker": checker}])
    loaded = load([f"jsonl:{path}"])
    assert not loaded.bad_lines
    assert loaded.items[0].grade(response)[1] is correct


def test_jsonl_ids_default_to_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "a?", "answer": 1}, "",
                                                 {"id": "q-b", "question": "b?", "answer": "2"}])
    assert [i.question.id for i in load([f"jsonl:{path}"]).items] == ["jsonl:mine:1", "q-b"]


# ------------------------------------------------------------------------------------ runs


def test_bad_lines_are_reported_with_line_numbers_and_never_run(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"id": "ok-1", "question": "What is 6 * 7?", "answer": 42},
        "{not json",
        {"question": "no answer here"},
        {"id": "ok-2", "question": "Capital of France?", "answer": "Paris", "checker": "exact"},
        "",
        {"question": "q", "answer": "1", "checker": "fuzzy"},
        {"question": "q", "answer": "Paris", "checker": "number"},
        ["a", "list"],
        {"id": "ok-1", "question": "again", "answer": 1},
    ])
    loaded = load([f"jsonl:{path}"])
    assert [i.question.id for i in loaded.items] == ["ok-1", "ok-2"]
    assert [p.split(": ", 1)[0] for p in loaded.bad_lines] == [f"{path}:{n}" for n in (2, 3, 6, 7, 8, 9)]
    assert "not JSON" in loaded.bad_lines[0] and "missing 'answer'" in loaded.bad_lines[1]
    assert "unknown checker 'fuzzy'" in loaded.bad_lines[2] and "duplicate id 'ok-1'" in loaded.bad_lines[5]


def test_cli_reports_bad_lines_and_counts_only_good_ones(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "What is 6 * 7?", "answer": 42}, "oops",
                                              {"question": "Say hi", "answer": "hi", "checker": "exact"}])
    out = tmp_path / "out.jsonl"
    argv = ["--dataset", f"jsonl:{path}", "--dataset", "gen:addition", "--n", "2", "--levels", "single",
            "--policy-file", str(policy_file), "--model-dir", str(tiny_dir), "--out", str(out)]
    assert eval_cli.main(argv) == 1  # something was skipped
    captured = capsys.readouterr()
    assert f"{path}:2: not JSON" in captured.err
    assert sorted(r["id"] for r in rows(out)) == ["addition-0-0", "addition-0-1", "jsonl:q:1", "jsonl:q:3"]
    assert "skipped 1 bad line" in captured.out and "graded 4 of 4" in captured.out
    single = next(line for line in captured.out.splitlines() if line.startswith("single"))
    assert single.split()[1] == "4"


def test_resume_skips_done_rows_and_survives_a_torn_last_line(
    tmp_path: Path, tiny: Engine, policy_file: Path
) -> None:
    target = InProcess(tiny, load_policies(policy_file))
    items = load(["gen:addition", "gen:successor"], n=2, seed=1).items
    runs = eval_cli.runs_for(["single", "self_consistency"], None)
    out = tmp_path / "out.jsonl"
    first = eval_cli.run_eval(items, target, runs, out, policy="fixed")
    assert len(first.written) == 8 and first.already_done == 0
    assert {(r["id"], r["level"]) for r in rows(out)} == {(i.question.id, lv) for i in items for lv, _ in runs}
    row = rows(out)[1]
    assert row["decision_level"] == row["level"] and row["samples"] >= 1 and row["policy"].startswith("fixed@")

    again = eval_cli.run_eval(items, target, runs, out, policy="fixed")
    assert again.written == [] and again.already_done == 8 and len(rows(out)) == 8
    assert len(again.rows) == 8  # the summary still covers every pair

    # a run killed mid-write: the last row is torn
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:40])
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        third = eval_cli.run_eval(items, target, runs, out, policy="fixed", log=stream)
    assert "cut a torn last line" in log.read_text() and "7 of 8 rows already there" in log.read_text()
    assert len(third.written) == 1 and (third.written[0].id, third.written[0].level) == (
        json.loads(lines[-1])["id"], json.loads(lines[-1])["level"])
    assert len(rows(out)) == 8  # every line is whole JSON again


def test_repeated_rows_are_reported_and_the_first_of_each_is_used(tmp_path: Path) -> None:
    items, made = two_rows(tmp_path)
    first, second = made.splitlines(keepends=True)
    out = tmp_path / "joined.jsonl"
    later = json.dumps({**json.loads(first), "correct": False, "answer": "5"}).encode() + b"\n"
    out.write_bytes(first + second + later)  # two results files joined: question 'a' twice
    log = io.StringIO()
    report = eval_cli.run_eval(items, Scripted("4"), [("single", "single")], out, log=log)
    assert "1 row(s) repeat an earlier row's (question id, level), first on line 3" in log.getvalue()
    assert report.already_done == 2 and len(report.rows) == 2 and report.written == []
    assert [r["correct"] for r in report.rows] == [json.loads(first)["correct"], json.loads(second)["correct"]]
    clean = io.StringIO()
    eval_cli.run_eval(items, Scripted("4"), [("single", "single")], tmp_path / "made.jsonl", log=clean)
    assert "repeat an earlier row" not in clean.getvalue()


def test_repair_tail_keeps_a_whole_row_that_only_lacks_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "level": "single"}\n{"id": "b", "level": "single"}')
    assert repair_tail(path) == "newline" and path.read_text().endswith("}\n") and len(rows(path)) == 2
    path.write_text('{"id": "b", "lev')
    assert repair_tail(path) == "cut" and path.read_text() == ""
    assert repair_tail(path) == ""


def test_changed_question_text_stops_resume(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "question": "What is 1 + 1?", "answer": 2}])
    out = tmp_path / "out.jsonl"
    eval_cli.run_eval(load([f"jsonl:{path}"]).items, Scripted("2"), [("single", "single")], out)
    write_jsonl(path, [{"id": "a", "question": "What is 2 + 2?", "answer": 4}])
    with pytest.raises(eval_cli.EvalError, match="write to a new --out"):
        eval_cli.run_eval(load([f"jsonl:{path}"]).items, Scripted("4"), [("single", "single")], out)


def test_a_checker_error_is_reported_and_left_out_of_every_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(response: str, question: object) -> tuple[str, bool]:
        raise RuntimeError("cannot parse")

    monkeypatch.setitem(CHECKERS, "broken", broken)
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "good", "question": "6 * 7?", "answer": 42},
                                              {"id": "bad", "question": "x?", "answer": "x", "checker": "broken"}])
    out = tmp_path / "out.jsonl"
    log = tmp_path / "log.txt"
    target = Scripted("The answer is 42.")
    with log.open("w") as stream:
        report = eval_cli.run_eval(load([f"jsonl:{path}"]).items, target, [("single", "single")], out, log=stream)
    assert f"{path}:2: checker 'broken' raised RuntimeError: cannot parse" in log.read_text()
    assert [r["id"] for r in rows(out)] == ["good"] and rows(out)[0]["correct"] is True
    errors = rows(eval_cli.errors_path(out))
    assert errors[0]["id"] == "bad" and errors[0]["where"] == f"{path}:2" and errors[0]["stage"] == "check"
    summary = eval_cli.summarize(report, ["single"])
    assert "checker errors 1" in summary and "graded 1 of 2" in summary
    assert next(line for line in summary.splitlines() if line.startswith("single")).split()[1:3] == ["1", "1.000"]
    assert not report.clean
    # not counted means not done either: the next run asks again
    again = eval_cli.run_eval(load([f"jsonl:{path}"]).items, target, [("single", "single")], out, log=log.open("w"))
    assert again.already_done == 1 and again.checker_errors == 1 and target.calls == 3
    assert len(rows(eval_cli.errors_path(out))) == 1  # the latest run's errors, not a pile-up


def test_route_records_the_policy_decision_in_process(tmp_path: Path, tiny: Engine, policy_file: Path) -> None:
    from router.difficulty.scorer import DifficultyScorer

    target = InProcess(tiny, load_policies(policy_file), DifficultyScorer())
    assert target.check("adaptive", ["single"], route=True) == "adaptive"
    out = tmp_path / "out.jsonl"
    runs = eval_cli.runs_for([], "adaptive")
    eval_cli.run_eval(load(["gen:addition"], n=2).items, target, runs, out, policy="adaptive")
    for row in rows(out):
        assert row["level"] == "policy:adaptive" and row["decision_level"] == "single"  # target 0: cheapest
        assert row["difficulty"] == pytest.approx(1 - row["predicted"]["single"], abs=1e-3)
        assert row["policy"].startswith("adaptive@") and row["reason"].startswith("threshold")
    with pytest.raises(ValueError, match="unknown level 'best_of_n'"):
        target.check("adaptive", ["best_of_n"])
    with pytest.raises(ValueError, match="no difficulty classifier"):
        InProcess(tiny, load_policies(policy_file)).check("adaptive", [], route=True)


# ------------------------------------------------------------------------------------ through a server


@pytest.fixture(scope="module")
def server(tiny_dir: Path, tiny: Engine, policy_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.service.conftest import ThreadedServer, make_settings

    srv = ThreadedServer(make_settings(tiny_dir.parent, tiny_dir.name, tmp_path_factory.mktemp("store"),
                                       policy_file=policy_file))
    yield srv.target
    srv.close()


def test_target_mode_writes_the_rows_in_process_mode_writes(
    tmp_path: Path, server: str, tiny_dir: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--dataset", "gen:successor", "--n", "2", "--levels", "single", "--policy", "adaptive", "--route",
              "--quiet"]
    remote, local = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    assert eval_cli.main([*common, "--target", server, "--out", str(remote)]) == 0
    assert eval_cli.main([*common, "--policy-file", str(policy_file), "--model-dir", str(tiny_dir),
                          "--out", str(local)]) == 0
    capsys.readouterr()
    r, loc = rows(remote), rows(local)
    assert [(x["id"], x["level"]) for x in r] == [(x["id"], x["level"]) for x in loc]
    for a, b in zip(r, loc, strict=True):  # greedy, same plan: the same answer and cost either way
        for key in ("answer", "correct", "completion_tokens", "samples", "decision_level", "policy", "spec"):
            assert a[key] == b[key], key
        assert a["latency_ms"] > 0
    routed = [x for x in r if x["level"] == "policy:adaptive"]
    assert routed and all(x["difficulty"] is not None and "single" in x["predicted"] for x in routed)
    assert eval_cli.main(["--dataset", "gen:successor", "--n", "1", "--levels", "no_level", "--target", server,
                          "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "unknown level 'no_level'" in capsys.readouterr().err


def test_jsonl_rejects_non_finite_numbers_and_bad_bytes_line_by_line_and_reads_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join([
        b'{"id": "first", "question": "What is 1 + 1?", "answer": 2}',
        b'{"question": "q2", "answer": NaN}',
        b'{"question": "q3", "answer": Infinity}',
        b'{"question": "q4", "answer": 1e999}',
        b'{"question": "caf\xe9?", "answer": "x"}',
        b'{"question": "q6", "answer": 1, "choices": [1, -Infinity]}',
        b'{"id": "last", "question": "What is 2 + 2?", "answer": 4}',
    ]) + b"\n")
    loaded = load([f"jsonl:{path}"])
    assert [i.question.id for i in loaded.items] == ["first", "last"]
    assert [p.split(": ", 1)[0] for p in loaded.bad_lines] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "'answer' must be a finite number" in loaded.bad_lines[0] and "not UTF-8 (byte 0xe9" in loaded.bad_lines[3]


def test_a_level_that_cannot_run_with_its_options_stops_the_run_naming_it(
    tmp_path: Path, tiny: Engine, policy_file: Path
) -> None:
    fixed = load_policies(policy_file).get("fixed")
    levels = tuple(dataclasses.replace(lv, options=(("wave", "banana"),)) if lv.name == "self_consistency" else lv
                   for lv in fixed.levels)
    target = InProcess(tiny, PolicySet([dataclasses.replace(fixed, levels=levels)], "fixed"))
    out = tmp_path / "out.jsonl"
    refused = "level 'self_consistency' .* wave: must be an integer >= 1, got 'banana'"
    with pytest.raises(eval_cli.EvalError, match=refused):
        eval_cli.run_eval(load(["gen:addition"], n=1).items, target, [("self_consistency", "self_consistency")], out,
                          policy="fixed")


def test_a_strategy_bug_is_not_blamed_on_the_level_options(
    tmp_path: Path, tiny: Engine, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("a bug inside the strategy")

    monkeypatch.setattr("router.strategies.self_consistency.SelfConsistency.run", broken)
    target = InProcess(tiny, load_policies(policy_file))
    with pytest.raises(ValueError, match="a bug inside the strategy"):
        eval_cli.run_eval(load(["gen:addition"], n=1).items, target, [("self_consistency", "self_consistency")],
                          tmp_path / "out.jsonl", policy="fixed")


# ------------------------------------------------------------------------------------ robustness


def in_process_argv(dataset: str, out: Path, tiny_dir: Path, policy_file: Path, *extra: str) -> list[str]:
    return ["--dataset", dataset, "--n", "2", "--levels", "single", "--policy-file", str(policy_file),
            "--model-dir", str(tiny_dir), "--out", str(out), "--quiet", *extra]


def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model fails the test: what is checked must be checked before it."""
    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("router.config.Settings.load_engine", load)


def two_rows(tmp_path: Path) -> tuple[list[Any], bytes]:
    """Items of a two-question dataset and the bytes of a results file with both their rows."""
    path = write_jsonl(tmp_path / "two.jsonl", [{"id": "a", "question": "1 + 1?", "answer": 2},
                                                {"id": "b", "question": "2 + 2?", "answer": 4}])
    items = load([f"jsonl:{path}"]).items
    out = tmp_path / "made.jsonl"
    eval_cli.run_eval(items, Scripted("4"), [("single", "single")], out)
    return items, out.read_bytes()


def test_a_file_that_is_not_results_is_refused_untouched_and_only_a_torn_row_is_cut(tmp_path: Path) -> None:
    items, made = two_rows(tmp_path)
    first, second = made.splitlines(keepends=True)
    wrong = second.replace(b'"correct": true', b'"correct": "false"')
    cases = {  # contents -> the line reported
        b"my notes\nlast line without newline": 1,  # a torn tail is cut only from a results file
        b"hello": 1,
        first + b"GARBAGE{{{\n" + second: 2,  # a corrupt line in the middle
        first + b'{"foo": 1}\n': 2,  # an object that is not a row, at the end
        first + b'{"foo": 1}': 2,  # ... without its newline: whole JSON, not a torn row
        first + b"\xff\xfe not utf-8\n" + second: 2,
        first + wrong: 2,  # a row whose fields do not hold what rows hold
        first + second.replace(b'"completion_tokens": 3', b'"completion_tokens": -3'): 2,
    }
    for i, (contents, line) in enumerate(cases.items()):
        out = tmp_path / f"case{i}.jsonl"
        out.write_bytes(contents)
        target = Scripted("4")
        with pytest.raises(eval_cli.EvalError, match=f"line {line}: .*Nothing was changed"):
            eval_cli.run_eval(items, target, [("single", "single")], out)
        assert out.read_bytes() == contents and target.calls == 0, contents
    # a string "false" would have counted as correct
    report = eval_cli.Report(total=1, rows=[json.loads(wrong)])
    single = next(x for x in eval_cli.summarize(report, ["single"]).splitlines() if x.startswith("single"))
    assert single.split()[2] == "0.000"
    # what a killed run leaves is still repaired: a torn row, or a zero-filled tail after rows
    for tail in (second[:30], b"\0" * 40):
        out = tmp_path / "torn.jsonl"
        out.write_bytes(first + tail)
        again = eval_cli.run_eval(items, Scripted("4"), [("single", "single")], out, log=io.StringIO())
        assert again.already_done == 1 and len(again.written) == 1 and len(rows(out)) == 2


def test_out_that_is_a_dataset_or_not_a_writable_file_is_refused_before_the_model_loads(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "q.jsonl", [{"question": "What is 6 * 7?", "answer": 42}])
    errors_named = write_jsonl(tmp_path / "r.errors.jsonl", [{"question": "What is 6 * 7?", "answer": 42}])
    (tmp_path / "file.jsonl").write_text("")
    before = {p: p.read_bytes() for p in (data, errors_named)}
    no_model(monkeypatch)
    for spec, out, problem in [
        (f"jsonl:{data}", data, "is the dataset"),
        (f"jsonl:{errors_named}", tmp_path / "r.jsonl", "is the dataset"),  # its errors file would replace it
        ("gen:addition", tmp_path, "is a directory"),
        ("gen:addition", tmp_path / "file.jsonl" / "x.jsonl", "is a file, not a directory"),
        ("gen:addition", Path("/dev/null"), "not a regular file"),
    ]:
        assert eval_cli.main(in_process_argv(spec, out, tiny_dir, policy_file)) == 2, out
        assert problem in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before


def test_a_write_error_during_a_run_is_a_message_not_a_traceback(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "out.jsonl"))

    monkeypatch.setattr(eval_cli, "run_eval", full)
    assert eval_cli.main(in_process_argv("gen:addition", tmp_path / "out.jsonl", tiny_dir, policy_file)) == 2
    assert "No space left on device" in capsys.readouterr().err


def test_resume_refuses_rows_of_another_model_cap_or_level_run(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, "--max-new-tokens", "2")) == 0
    made = out.read_bytes()
    assert all(r["model"] == "tiny-llama" and r["max_new_tokens"] == 2 for r in rows(out))
    assert all(r["spec"].startswith("single@") for r in rows(out))
    # the level 'single' runs otherwise (greedy -> sampled): refused, naming the level and both runs
    other_policy = tmp_path / "other.yaml"
    other_policy.write_text(policy_file.read_text().replace(
        "strategy: single, samples: 1, sampling: {max_new_tokens: 4}}",
        "strategy: single, samples: 1, sampling: {temperature: 0.5, max_new_tokens: 4}}", 1))
    for extra, problem in [
        (["--max-new-tokens", "3"], "--max-new-tokens 2 (line 1), and this run uses 3"),
        (["--n", "3"], "--max-new-tokens 2 (line 1), and this run uses 0 (each level's own)"),
    ]:
        assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, *extra)) == 2
        assert problem in capsys.readouterr().err and out.read_bytes() == made
    argv = in_process_argv("gen:addition", out, tiny_dir, other_policy, "--max-new-tokens", "2")
    assert eval_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"level 'single' ran as {rows(out)[0]['spec']!r} (line 1)" in err and "sampling" in err
    assert out.read_bytes() == made
    # another model: the file's rows say which one made them
    out.write_text("".join(json.dumps({**r, "model": "other-model"}) + "\n" for r in rows(out)))
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, "--max-new-tokens", "2")) == 2
    assert "the model (--model-dir, or the server's) 'other-model' (line 1), and this run uses 'tiny-llama'" in (
        capsys.readouterr().err)
    # rows of an older router eval do not say: refused, with the reason
    old = "".join(json.dumps({k: v for k, v in r.items() if k not in ("model", "max_new_tokens")}) + "\n"
                  for r in rows(out))
    out.write_text(old)
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, "--max-new-tokens", "2")) == 2
    assert "2 row(s) (first on line 1) do not record model, max_new_tokens" in capsys.readouterr().err
    assert out.read_text() == old
    # rows that record model and cap but not what their level ran (sessions before `spec`) resume
    # under the policy version they were written under, and only under it
    no_spec = "".join(json.dumps({k: v for k, v in r.items() if k != "spec"}) + "\n"
                      for r in (json.loads(line) for line in made.splitlines()))
    out.write_text(no_spec)
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, other_policy, "--max-new-tokens", "2")) == 2
    assert "by an older router eval that did not record what each level ran" in capsys.readouterr().err
    assert out.read_text() == no_spec
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, "--max-new-tokens", "2")) == 0
    assert rows(out)[:2] == [json.loads(line) for line in no_spec.splitlines()]
    # the same settings resume
    out.write_bytes(made)
    assert eval_cli.main(in_process_argv("gen:addition", out, tiny_dir, policy_file, "--max-new-tokens", "2",
                                         "--n", "3")) == 0
    assert len(rows(out)) == 3


def test_resume_after_a_tuned_cost_or_threshold_keeps_the_levels_rows(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`router tune --write-policy` moves a rule's threshold and the levels' costs: the forced levels run
    as before, so their rows resume; a --route row of the changed policy does not."""
    out = tmp_path / "out.jsonl"
    argv = ["--dataset", "gen:addition", "--n", "2", "--levels", "single,self_consistency", "--policy", "adaptive",
            "--model-dir", str(tiny_dir), "--out", str(out), "--quiet"]
    assert eval_cli.main([*argv, "--policy-file", str(policy_file)]) == 0
    before = rows(out)
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(policy_file.read_text().replace("target: 0.0}", "target: 0.35}").replace(
        "cost_tokens: 100", "cost_tokens: 140"))
    assert load_policies(tuned).get("adaptive").version != load_policies(policy_file).get("adaptive").version
    assert eval_cli.main([*argv, "--policy-file", str(tuned), "--n", "3"]) == 0
    after = rows(out)
    assert after[:4] == before and len(after) == 6  # the old rows kept, the third question's rows added
    assert {r["spec"] for r in after if r["level"] == "single"} == {before[0]["spec"]}
    assert after[-1]["policy"] != before[0]["policy"]  # each row still says which policy version planned it
    capsys.readouterr()
    # a policy's own choice depends on all of it: those rows do not resume across the edit
    routed = {"policy:adaptive": "adaptive@v1"}
    items, made = two_rows(tmp_path)
    file = tmp_path / "routed.jsonl"
    file.write_text("".join(json.dumps({**json.loads(line), "level": "policy:adaptive", "spec": "adaptive@v1"}) + "\n"
                            for line in made.splitlines()))
    changed = "own choice was made under 'adaptive@v1' .* under 'adaptive@v2': the policy changed"
    with pytest.raises(eval_cli.EvalError, match=changed):
        eval_cli.run_eval(items, Scripted("4"), [("policy:adaptive", "")], file,
                          specs={"policy:adaptive": "adaptive@v2"})
    again = eval_cli.run_eval(items, Scripted("4"), [("policy:adaptive", "")], file, specs=routed)
    assert again.already_done == 2


def test_a_level_that_runs_otherwise_mid_run_stops_before_its_row(tmp_path: Path) -> None:
    items, _ = two_rows(tmp_path)
    out = tmp_path / "out.jsonl"
    with pytest.raises(eval_cli.EvalError, match="its policy changed during the run"):
        eval_cli.run_eval(items, Scripted("4", spec="single@new"), [("single", "single")], out,
                          specs={"single": "single@old"})
    assert not out.exists() or out.read_text() == ""


def test_a_server_answering_with_another_model_stops_the_run_before_its_row(tmp_path: Path) -> None:
    items, made = two_rows(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(made.splitlines(keepends=True)[0])
    with pytest.raises(eval_cli.EvalError, match="'' \\(line 1\\), and this run uses 'm2'"):
        eval_cli.run_eval(items, Scripted("4", model="m2"), [("single", "single")], out)
    assert out.read_bytes() == made.splitlines(keepends=True)[0]


@pytest.mark.parametrize(("extra", "problem"), [
    (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "99999999"], "more than tiny-llama's context"),
    (["--timeout", "-1"], "--timeout must be a positive number"),
    (["--timeout", "0"], "--timeout must be a positive number"),
])
def test_bad_numbers_are_usage_errors_before_the_model_loads(
    tmp_path: Path, tiny_dir: Path, tiny: Engine, policy_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], extra: list[str], problem: str,
) -> None:
    no_model(monkeypatch)
    assert eval_cli.main(in_process_argv("gen:addition", tmp_path / "o.jsonl", tiny_dir, policy_file, *extra)) == 2
    assert problem in capsys.readouterr().err


def test_a_cap_the_server_refuses_is_a_usage_error_before_any_question(
    tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "remote.jsonl"
    argv = ["--dataset", "gen:successor", "--n", "2", "--levels", "single", "--target", server, "--quiet",
            "--out", str(out)]
    assert eval_cli.main([*argv, "--max-new-tokens", "99999999"]) == 2
    assert "refuses --max-new-tokens 99999999" in capsys.readouterr().err and not out.exists()
    assert eval_cli.main([*argv, "--max-new-tokens", "3"]) == 0
    assert all(r["model"] == "tiny-llama" and r["max_new_tokens"] == 3 for r in rows(out))
