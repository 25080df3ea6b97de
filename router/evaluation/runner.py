"""Run compute levels over a question set and write one JSONL row per (question, level).

This is the core of difficulty labels (``router difficulty labels``): every level runs as the real
strategy the server would run, with the plan the policy would hand it when that level is forced,
in this process. Rows carry what the classifier and the tuner need: correct or not, the extracted
answer, tokens, samples, latency, and the question's family, seed and split so that splits are
reproducible from the file alone. ``router eval`` (:mod:`router.evaluation.eval_cli`) writes the
same rows, with the decision filled in, from this process or from a server.

Resumable: rows already in the output file (same question id and level) are skipped, so an
interrupted run picks up where it stopped; a torn last line is cut first (:func:`repair_tail`).
Rows are flushed one by one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def repair_tail(path: Path) -> str:
    """Make ``path`` end on a whole line before rows are appended to it.

    A run killed mid-write can leave a torn last line; appending to it would glue the next row
    onto the fragment and lose both. A fragment that is not a JSON object is cut off; a complete
    row that only lacks its newline gets one. Returns what was done: "", "cut" or "newline".
    """
    if not path.exists() or path.stat().st_size == 0:
        return ""
    with path.open("rb+") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return ""
        end = f.seek(0, 2)
        start, tail = end, b""
        while start > 0 and b"\n" not in tail:
            step = min(65536, start)
            start -= step
            f.seek(start)
            tail = f.read(step) + tail
        cut = start + tail.rfind(b"\n") + 1  # rfind -1 (no newline at all) -> cut at 0
        try:
            whole = isinstance(json.loads(tail[cut - start:]), dict)
        except ValueError:
            whole = False
        if whole:
            f.write(b"\n")
            return "newline"
        f.truncate(cut)
        return "cut"


def read_done(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows already in ``out`` by (id, level); lines that are not rows (a torn tail) are ignored."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if not out.exists():
        return done
    with out.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                done.setdefault((row["id"], row["level"]), row)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
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
        truncated=f.truncated_by_budget or f.truncated_by_deadline,
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
