"""Schema migrations: a file written by the v1 store opens in the current one with its rows intact
and backfilled; a fresh file and a migrated one end with the same schema; a newer file is refused."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest

from router.store import SCHEMA_VERSION, SchemaVersionError, SqliteStore
from tests.store.helpers import PLAN, outcome, query

# The v1 store's DDL and writes, verbatim, so this test keeps meaning what it says when the code moves on.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    request_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    policy TEXT NOT NULL, policy_version TEXT NOT NULL, level TEXT NOT NULL,
    experiment TEXT NOT NULL, arm TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    outcome_json TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL REFERENCES decisions(request_id),
    key TEXT NOT NULL,
    score REAL, label TEXT NOT NULL, comment TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (request_id, key)
);
"""


def v1_outcome_json() -> str:
    o = outcome("7")
    return json.dumps({
        "text": o.text, "answer": o.answer, "votes": o.votes, "usage": asdict(o.usage), "timings": asdict(o.timings),
        "flags": asdict(o.flags),
        "candidates": [
            {"text": c.completion.text, "answer": c.answer, "finish_reason": c.completion.finish_reason.value,
             "tokens": c.completion.completion_tokens, "scores": c.scores, "chosen": c.chosen}
            for c in o.candidates
        ],
        "model": "tiny",
    })


def make_v1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", ("1",))
    plan_json = json.dumps(asdict(PLAN), default=str)
    for request_id, outcome_json in (("old1", v1_outcome_json()), ("old2", None)):
        conn.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (request_id, 1000.0, PLAN.policy, PLAN.policy_version, PLAN.level, PLAN.experiment, PLAN.arm,
                      plan_json, outcome_json))
    conn.execute("INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?, ?, ?)", ("old1", "correct", 1.0, "", "", 1001.0))
    conn.commit()
    conn.close()


def schema(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {t: [r[1:4] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
        out["indexes"] = conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
        return out
    finally:
        conn.close()


def test_v1_file_migrates_with_rows_intact_and_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_v1_file(path)
    store = SqliteStore(path)
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    old = store.decision("old1")
    assert old["plan"]["policy_version"] == "abc123" and old["outcome"]["answer"] == "7"
    assert store.decision("old2")["outcome"] is None
    # Feedback stays idempotent across the migration; new rows go in beside the old ones.
    assert store.add_feedback("old1", "correct", 0.0, "", "").result(timeout=10) is False
    assert store.feedback_count("old1") == 1
    store.record_decision("new1", PLAN, outcome())
    assert store.add_feedback("new1", "correct", 1.0, "", "").result(timeout=10) is True
    assert store.close()
    cols = "request_id, strategy, samples, max_new_tokens, status, model, answer, prompt_tokens, completion_tokens, " \
           "samples_used, total_ms, degraded, truncated_by_budget"
    assert query(path, f"SELECT {cols} FROM decisions ORDER BY request_id") == [
        ("new1", "single", 1, 8, "ok", "", "42", 10, 2, 1, 6.0, 0, 1),
        ("old1", "single", 1, 8, "ok", "tiny", "7", 10, 2, 1, 6.0, 0, 1),
        ("old2", "single", 1, 8, "cancelled", None, None, None, None, None, None, None, None),
    ]


def test_fresh_and_migrated_files_have_the_same_schema(tmp_path: Path) -> None:
    make_v1_file(tmp_path / "old.sqlite3")
    SqliteStore(tmp_path / "old.sqlite3").close()
    SqliteStore(tmp_path / "new.sqlite3").close()
    migrated, fresh = schema(tmp_path / "old.sqlite3"), schema(tmp_path / "new.sqlite3")
    assert migrated == fresh
    assert {"decisions", "feedback", "shadow_decisions", "store_runs", "meta"} <= set(fresh)


def test_a_newer_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    before = schema(path)
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        SqliteStore(path)
    assert schema(path) == before
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION + 1),)]
