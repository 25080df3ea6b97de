"""The SQLite decision store: round trip, idempotent feedback, unknown ids, durability across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.domain import Candidate, Flags, Outcome, Plan, Usage
from router.engine import Completion, FinishReason, SamplingParams
from router.errors import InvalidArgumentError, UnknownRequestError
from router.store import SqliteStore

PLAN = Plan("single", "single", 1, SamplingParams(max_new_tokens=8), "fixed", "abc123", "test")


def outcome() -> Outcome:
    comp = Completion(0, "42", [1, 2], [-0.1, -0.2], FinishReason.EOS, 10)
    return Outcome("42", "42", [Candidate(comp, "42", chosen=True)], {"42": 1}, Usage(10, 2, 1, 1), Flags())


def test_decision_round_trip_and_idempotent_feedback(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.record_decision("r1", PLAN, outcome())
    row = store.decision("r1")
    assert row["plan"]["level"] == "single" and row["plan"]["policy_version"] == "abc123"
    assert row["outcome"]["answer"] == "42" and row["outcome"]["usage"]["completion_tokens"] == 2
    assert store.add_feedback("r1", "correct", 1.0, "", "").result() is True
    assert store.add_feedback("r1", "correct", 0.0, "", "").result() is False
    assert store.feedback_count("r1") == 1
    with pytest.raises(UnknownRequestError):
        store.add_feedback("nope", "correct", 1.0, "", "").result()
    with pytest.raises(InvalidArgumentError):
        store.add_feedback("r1", "", 1.0, "", "")
    store.close()


def test_writes_survive_a_clean_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    for i in range(50):
        store.record_decision(f"r{i}", PLAN, outcome() if i % 2 else None)
    store.close()  # flushes queued writes
    again = SqliteStore(path)
    assert again.decision("r49")["outcome"]["text"] == "42"
    assert again.decision("r48")["outcome"] is None
    assert again.decision("r50") is None
    again.close()
