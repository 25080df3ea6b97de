"""The SQLite decision store in one process: round trip, idempotent feedback, ordering, the bounded
queue and its overflow, concurrent writers (threads, and two store instances on one file), close."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from router.errors import InvalidArgumentError, NotReadyError, OverloadedError, UnknownRequestError
from router.store import SqliteStore
from tests.store.helpers import PLAN, SHADOW_PLAN, outcome, query


def test_decision_round_trip_and_idempotent_feedback(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    assert store.record_decision("r1", PLAN, outcome()) is True
    # Feedback queued right behind its decision finds it: the queue is processed in order.
    assert store.add_feedback("r1", "correct", 1.0, "", "").result(timeout=10) is True
    assert store.add_feedback("r1", "correct", 0.0, "", "").result(timeout=10) is False
    assert store.add_feedback("r1", "helpful", None, "yes", "fine").result(timeout=10) is True
    assert store.feedback_count("r1") == 2
    row = store.decision("r1")
    assert row["plan"]["level"] == "single" and row["plan"]["policy_version"] == "abc123"
    assert row["outcome"]["answer"] == "42" and row["outcome"]["usage"]["completion_tokens"] == 2
    with pytest.raises(UnknownRequestError):
        store.add_feedback("nope", "correct", 1.0, "", "").result(timeout=10)
    with pytest.raises(InvalidArgumentError):
        store.add_feedback("r1", "", 1.0, "", "")
    with pytest.raises(InvalidArgumentError):
        store.add_feedback("", "correct", 1.0, "", "")
    assert store.decision("nope") is None
    assert store.close() is True
    # The analysis columns hold the plan, usage, timings and flags without parsing JSON.
    cols = ("policy, policy_version, level, strategy, samples, difficulty, status, answer, prompt_tokens, "
            "completion_tokens, samples_used, model_calls, total_ms, degraded, truncated_by_budget, max_new_tokens")
    assert query(path, f"SELECT {cols} FROM decisions") == [
        ("fixed", "abc123", "single", "single", 1, None, "ok", "42", 10, 2, 1, 1, 6.0, 0, 1, 8)
    ]
    assert query(path, "SELECT key, score FROM feedback ORDER BY key") == [("correct", 1.0), ("helpful", None)]


def test_cancelled_and_shadow_decisions(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    store.record_decision("r1", PLAN, None)
    assert store.record_shadow("r1", SHADOW_PLAN) is True
    assert store.decision("r1")["outcome"] is None
    store.record_decision("r2", SHADOW_PLAN, outcome())
    plan = store.decision("r2")["plan"]
    assert plan["predicted"] == {"vote": 0.9} and plan["options"] == {"verifier": "majority"}
    assert plan["sampling"]["stop"] == ["\n\n"]
    assert store.close() and store.stats()["failed"] == 0
    assert query(path, "SELECT request_id, status, answer, total_ms, estimated_tokens, estimated_latency_ms "
                       "FROM decisions ORDER BY request_id") == [
        ("r1", "cancelled", None, None, 0.0, 0.0), ("r2", "ok", "42", 6.0, 640.0, 1200.0)
    ]
    rows = query(path, "SELECT request_id, experiment, arm, policy, level, samples, difficulty, plan_json "
                       "FROM shadow_decisions")
    assert len(rows) == 1 and rows[0][:7] == ("r1", "exp1", "B", "ladder", "vote", 5, 0.8)
    assert '"verifier": "majority"' in rows[0][7]


def test_writes_survive_a_clean_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    for i in range(50):
        store.record_decision(f"r{i}", PLAN, outcome() if i % 2 else None)
    assert store.close() is True  # flushes queued writes
    assert store.stats()["written"] == 50 and store.stats()["queued"] == 0
    again = SqliteStore(path)
    assert again.stats()["lost_at_last_start"] == 0
    assert again.decision("r49")["outcome"]["text"] == "42"
    assert again.decision("r48")["outcome"] is None
    assert again.decision("r50") is None
    again.close()
    runs = query(path, "SELECT written, accepted, dropped, closed_at IS NOT NULL, lost FROM store_runs "
                       "ORDER BY started_at")
    assert runs == [(50, 50, 0, 1, None), (0, 0, 0, 1, None)]
    assert list((tmp_path / "s.sqlite3.runs").iterdir()) == []  # counter files go with a clean close


def test_closed_store_refuses_without_blocking(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.record_decision("r1", PLAN, None)
    assert store.close() is True and store.close() is True
    assert store.record_decision("r2", PLAN, None) is False
    with pytest.raises(NotReadyError):
        store.add_feedback("r1", "correct", 1.0, "", "").result(timeout=1)
    with pytest.raises(NotReadyError):
        store.decision("r1")
    assert store.stats()["dropped"] == 2  # the decision and the feedback


def test_full_queue_drops_counts_and_reports_instead_of_stalling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, queue_size=20, batch_size=4, busy_timeout_s=0.05)
    # Another connection holds the write lock: the writer cannot commit, as if the disk stalled.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    caplog.set_level(logging.WARNING, logger="router.store.sqlite")
    start = time.perf_counter()
    accepted = [store.record_decision(f"r{i}", PLAN, outcome()) for i in range(1000)]
    elapsed = time.perf_counter() - start
    assert accepted == [True] * 20 + [False] * 980
    assert elapsed < 1.0, f"1000 offers to a stalled store took {elapsed:.2f} s"
    with pytest.raises(OverloadedError):
        store.add_feedback("r0", "correct", 1.0, "", "").result(timeout=1)
    assert not store.flush(timeout=0.2)  # still stalled
    stats = store.stats()
    assert stats["queued"] == 20 and stats["dropped"] == 981 and stats["written"] == 0
    assert any("dropped" in r.getMessage() and "queue is full" in r.getMessage() for r in caplog.records)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.close(timeout=10) is True
    stats = store.stats()
    assert stats["written"] == 20 and stats["queued"] == 0 and stats["accepted"] == 20
    assert query(path, "SELECT COUNT(*), MAX(CAST(substr(request_id, 2) AS INTEGER)) FROM decisions") == [(20, 19)]


def test_concurrent_threads(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, batch_size=16)
    results: dict[str, list[bool]] = {}

    def work(t: int) -> None:
        answers = []
        for i in range(100):
            assert store.record_decision(f"t{t}-{i}", PLAN, outcome())
            answers.append(store.add_feedback(f"t{t}-{i}", "correct", 1.0, "", ""))
            answers.append(store.add_feedback(f"t{t}-{i}", "correct", 0.0, "", ""))
        results[f"t{t}"] = [f.result(timeout=30) for f in answers]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.close() is True
    assert all(r == [True, False] * 100 for r in results.values()) and len(results) == 6
    assert query(path, "SELECT COUNT(*) FROM decisions") == [(600,)]
    assert query(path, "SELECT COUNT(*), SUM(score) FROM feedback") == [(600, 600.0)]
    assert store.stats() | {"lost_at_last_start": 0} == {
        "queued": 0, "queue_size": 10_000, "accepted": 1800, "written": 1800, "dropped": 0, "failed": 0,
        "lost_at_last_start": 0,
    }


def test_two_store_instances_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first, second = SqliteStore(path, batch_size=8), SqliteStore(path, batch_size=8)
    assert second.stats()["lost_at_last_start"] == 0  # the first is alive, not lost

    def work(store: SqliteStore, prefix: str) -> None:
        for i in range(300):
            store.record_decision(f"{prefix}{i}", PLAN, outcome())

    threads = [threading.Thread(target=work, args=(s, p)) for s, p in ((first, "x"), (second, "y"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each sees the other's commits: feedback through one store on a row the other wrote.
    assert first.flush(timeout=30)
    assert second.add_feedback("x299", "correct", 1.0, "", "").result(timeout=30) is True
    assert first.close() and second.close()
    by_prefix = query(path, "SELECT substr(request_id, 1, 1), COUNT(*) FROM decisions GROUP BY 1")
    assert by_prefix == [("x", 300), ("y", 300)]
    assert query(path, "SELECT COUNT(*), SUM(written) FROM store_runs WHERE closed_at IS NOT NULL") == [(2, 601)]


def test_memory_store(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    store.record_decision("r1", PLAN, outcome())
    assert store.add_feedback("r1", "k", 1.0, "", "").result(timeout=10) is True
    assert store.decision("r1")["outcome"]["answer"] == "42"
    assert store.close() is True
