"""Run compute levels over a question set and write one JSONL row per (question, level).

This is the core of difficulty labels (``router difficulty labels``): every level runs as the real
strategy the server would run, with the plan the policy would hand it when that level is forced,
in this process. Rows carry what the classifier and the tuner need: correct or not, the extracted
answer, tokens, samples, latency, and the question's family, seed and split so that splits are
reproducible from the file alone. ``router eval`` (:mod:`router.evaluation.eval_cli`) writes the
same rows, with the decision filled in, from this process or from a server.

Resumable: rows already in the output file (same question id and level) are skipped, so an
interrupted run picks up where it stopped; a torn last line is cut first (:func:`repair_tail`),
and only when the rest of the file is rows (:func:`scan_results`). Rows are flushed one by one.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from router.domain import Hints, Outcome, Plan, Query
from router.engine import CancelToken, Engine
from router.evaluation.datasets import Question
from router.policy.ladder import Policy
from router.strategies import StrategyContext, get_strategy


@dataclass(frozen=True)
class LevelResult:
    """One question answered at one level."""

    id: str
    family: str
    source: str
    seed: int
    split: str
    question: str
    expected: str
    level: str
    correct: bool
    answer: str
    prompt_tokens: int
    completion_tokens: int
    samples: int
    model_calls: int
    latency_ms: float
    truncated: bool  # the level hit a budget or deadline cap
    # What was decided (``router eval``; empty in difficulty labels). For a forced level
    # ``decision_level`` is that level; for a policy's own choice (level ``policy:NAME``) it is the
    # level the policy chose, with the difficulty and per-level predicted success it chose on.
    decision_level: str = ""
    difficulty: float | None = None
    predicted: dict[str, float] = field(default_factory=dict)
    policy: str = ""  # name@version of the policy that planned the run
    reason: str = ""  # the policy's reason for the level, in words
    checker: str = ""  # how ``correct`` was decided (router.evaluation.sources.CHECKERS)
    # What else changes answers (``router eval``; a resumed file must not mix them): the model's
    # name and the run's cap on new tokens (0: each level's own).
    model: str = ""
    max_new_tokens: int = 0
    # What ran, for resuming (``router eval``): for a forced level ``LEVEL@`` the :func:`run_spec` of
    # its plan; for a policy's own choice the policy's name@version (its whole content routes).
    spec: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def run_spec(level: str, strategy: str, samples: int, parameters: Mapping[str, str]) -> str:
    """``level@hash`` of what a forced level runs: strategy, samples, sampling and options (the
    decision's ``parameters``, as strings). A level's cost estimate, the policy's rule and its other
    levels do not enter: a tuned threshold or cost leaves the answers of a forced level as they were."""
    body = json.dumps({"strategy": strategy, "samples": samples, "parameters": dict(sorted(parameters.items()))},
                      sort_keys=True)
    return f"{level}@{hashlib.sha256(body.encode()).hexdigest()[:12]}"


ROW_START = b'{"id": '  # how every row (LevelResult.to_json) begins
_COUNTS = ("prompt_tokens", "completion_tokens", "samples", "model_calls")


def key_problem(row: Any) -> str | None:
    """Why ``row`` is not a row at all (no id and level), or None."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for key in ("id", "level"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"'{key}' must be a non-empty string"
    return None


def row_problem(row: Any) -> str | None:
    """Why ``row`` is not a result row that can be counted (what summaries and resume read), or None."""
    if (problem := key_problem(row)) is not None:
        return problem
    if not isinstance(row.get("question"), str):
        return "'question' must be a string"
    if not isinstance(row.get("correct"), bool):
        return f"'correct' must be true or false, got {row.get('correct')!r}"
    for key in _COUNTS:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"'{key}' must be a whole number >= 0, got {value!r}"
    latency = row.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, int | float) or not math.isfinite(latency) or latency < 0:
        return f"'latency_ms' must be a finite number >= 0, got {latency!r}"
    for key in ("decision_level", "policy", "model", "spec"):
        if key in row and not isinstance(row[key], str):
            return f"'{key}' must be a string, got {row[key]!r}"
    cap = row.get("max_new_tokens", 0)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        return f"'max_new_tokens' must be a whole number >= 0, got {cap!r}"
    return None


@dataclass
class ResultsScan:
    """What a results file holds, line by line (line numbers count from 1)."""

    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # lines that are not rows, with why
    torn_at: int | None = None  # byte offset of a torn last line that may be cut there
    needs_newline: bool = False  # the last line is whole and only lacks its newline
    bad_tail: bool = False  # the last line lacks its newline and is a bad line, not a torn row: never cut


def _parse(raw: bytes, problem: Callable[[Any], str | None]) -> tuple[dict[str, Any] | None, str, bool]:
    """(row or None, why not, whether the line is whole JSON at all)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", False
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})", False
    why = problem(row)
    return (row, "", True) if why is None else (None, why, True)


def scan_results(path: Path, problem: Callable[[Any], str | None] = key_problem) -> ResultsScan:
    """Read ``path`` line by line: the rows, the lines that are not rows (``problem`` says why), and
    whether its last line is a torn row that :func:`fix_tail` may cut.

    A missing file is empty. A file that is not a regular file (a directory, a device, a pipe) is
    never read: ValueError. The last line, when it lacks its newline and is not even JSON, counts
    as a torn row only when every earlier line is a row and the file is one of results: it begins
    with a row, or the fragment begins the way rows do. Anything else is a bad line.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return ResultsScan()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is {'a directory' if stat.S_ISDIR(info.st_mode) else 'not a regular file'}")
    data = path.read_bytes()
    scan = ResultsScan()
    *lines, last = data.split(b"\n")  # last is b"" when the file ends on a newline
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row, why, _ = _parse(raw, problem)
        if row is None:
            scan.bad.append((number, why))
        else:
            scan.rows.append((number, row))
    if not last.strip():
        scan.needs_newline = bool(last)
        return scan
    number = len(lines) + 1
    row, why, whole = _parse(last, problem)
    if row is not None:
        scan.rows.append((number, row))
        scan.needs_newline = True
    elif not whole and not scan.bad and (scan.rows or last.startswith(ROW_START) or ROW_START.startswith(last)):
        scan.torn_at = len(data) - len(last)
    else:
        scan.bad.append((number, f"{why}; no newline at the end"))
        scan.bad_tail = True
    return scan


def fix_tail(path: Path, scan: ResultsScan) -> str:
    """Make ``path`` end on a whole line before rows are appended to it, as ``scan`` (of ``path``) found it.

    A run killed mid-write can leave a torn last line; appending to it would glue the next row
    onto the fragment and lose both. Returns what was done: "", "cut" or "newline".
    """
    if scan.torn_at is not None:
        with path.open("rb+") as f:
            f.truncate(scan.torn_at)
        return "cut"
    if scan.needs_newline:
        with path.open("ab") as f:
            f.write(b"\n")
        return "newline"
    return ""


def repair_tail(path: Path) -> str:
    """:func:`fix_tail` after :func:`scan_results`; ValueError, with nothing changed, when the last line
    lacks its newline and is not a torn row of a results file (``path`` is not a results file)."""
    scan = scan_results(path)
    if scan.bad_tail:
        number, why = scan.bad[-1]
        raise ValueError(f"{path}:{number}: {why}: not a results file, nothing was cut")
    return fix_tail(path, scan)


def read_done(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows already in ``out`` by (id, level), the first of each; lines that are not rows are ignored."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for _, row in scan_results(out).rows:
        done.setdefault((row["id"], row["level"]), row)
    return done


def done_keys(path: Path) -> set[tuple[str, str]]:
    """(question id, level) pairs already in ``path``; a torn last line (killed run) is ignored."""
    return set(read_done(path))


def read_results(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def run_plan(engine: Engine, plan: Plan, text: str) -> tuple[Outcome, float]:
    """Run ``plan``'s strategy on ``text`` in this process, as the server's worker would: (outcome, ms)."""
    strategy = get_strategy(plan.strategy)
    start = time.perf_counter()
    outcome = strategy.run(Query(text=text), plan, StrategyContext(engine=engine, cancel=CancelToken()))
    return outcome, (time.perf_counter() - start) * 1000


def run_level(engine: Engine, policy: Policy, question: Question, level: str, split: str = "") -> LevelResult:
    """Answer one question at one level, as the server would when that level is forced."""
    plan = policy.plan(Hints(level=level), engine.max_samples)
    outcome, latency_ms = run_plan(engine, plan, question.text)
    answer, correct = question.grade(outcome.text)
    u, f = outcome.usage, outcome.flags
    return LevelResult(
        id=question.id, family=question.family, source=question.source, seed=question.seed, split=split,
        question=question.text, expected=question.answer, level=level, correct=correct, answer=answer,
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, samples=u.samples,
        model_calls=u.model_calls, latency_ms=round(latency_ms, 1),
        truncated=f.truncated_by_budget or f.truncated_by_deadline, model=engine.name,
    )


def run_levels(
    engine: Engine,
    policy: Policy,
    questions: Iterable[tuple[Question, str]],
    levels: list[str],
    out: Path,
    *,
    on_row: Callable[[LevelResult, int, int], None] | None = None,
) -> Iterator[LevelResult]:
    """Run every level on every (question, split) not yet in ``out``; append and yield the new rows."""
    for level in levels:
        policy.level(level)  # unknown level: fail before any work
    todo = [(q, split, lv) for q, split in questions for lv in levels]  # question-major: full rows first
    done = done_keys(out)
    todo = [(q, s, lv) for q, s, lv in todo if (q.id, lv) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(out)
    with out.open("a", encoding="utf-8") as f:
        for i, (q, split, level) in enumerate(todo, 1):
            row = run_level(engine, policy, q, level, split)
            f.write(row.to_json() + "\n")
            f.flush()
            if on_row is not None:
                on_row(row, i, len(todo))
            yield row


class ProgressLine:
    """A one-line progress bar with accuracy so far and an ETA, for a terminal or a log.

    Call it once per finished item with its row, or with ``None`` for an item that ended in an
    error (counted apart, never in the accuracy). On a terminal the line is redrawn in place; in a
    log (not a TTY) a line is written every ``log_every_s`` seconds and at the end.
    """

    WIDTH = 20

    def __init__(self, stream: TextIO = sys.stderr, log_every_s: float = 30.0) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.right = 0
        self.seen = 0
        self.errors = 0
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self.log_every_s = log_every_s
        self._logged = self.start

    def __call__(self, row: LevelResult | None, i: int, total: int) -> None:
        if row is None:
            self.errors += 1
        else:
            self.seen += 1
            self.right += row.correct
        now = time.monotonic()
        elapsed = now - self.start
        eta = elapsed / i * (total - i)
        filled = round(self.WIDTH * i / total) if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        acc = f"{self.right / self.seen:.3f}" if self.seen else "-"
        errors = f"  errors {self.errors}" if self.errors else ""
        level = row.level if row is not None else "(error)"
        line = (f"[{bar}] {i}/{total} {level:18s} acc so far {acc}{errors}  "
                f"elapsed {_duration(elapsed)}  ETA {_duration(eta)}")
        if self.tty:
            self.stream.write(f"\r{line}   " + ("\n" if i == total else ""))
        elif i == total or now - self._logged >= self.log_every_s:
            self.stream.write(line + "\n")
            self._logged = now
        self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
