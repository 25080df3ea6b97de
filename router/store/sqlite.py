"""SQLite store of decisions and feedback.

One connection owned by one writer thread: every call is queued to it, so the event loop never
blocks on disk and SQLite never sees two writers. WAL journal. The routing issue grows this
(bounded queue with overflow accounting, migrations, export); the schema carries a version now.
"""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from router.domain import Outcome, Plan
from router.errors import InvalidArgumentError, UnknownRequestError

SCHEMA_VERSION = 1
SCHEMA = """
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


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._writer.submit(self._open).result()

    def _open(self) -> None:
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._conn.commit()

    # -- writes (queued to the writer thread) --------------------------------------------------
    def record_decision(self, request_id: str, plan: Plan, outcome: Outcome | None) -> Future:
        plan_json = json.dumps(asdict(plan), default=str)
        outcome_json = None if outcome is None else json.dumps(_outcome_summary(outcome))
        return self._writer.submit(self._record, request_id, plan, plan_json, outcome_json)

    def _record(self, request_id: str, plan: Plan, plan_json: str, outcome_json: str | None) -> None:
        assert self._conn is not None
        self._conn.execute(
            "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, time.time(), plan.policy, plan.policy_version, plan.level, plan.experiment, plan.arm,
             plan_json, outcome_json),
        )
        self._conn.commit()

    def add_feedback(
        self, request_id: str, key: str, score: float | None, label: str, comment: str
    ) -> Future:
        """Future of ``True`` when stored now, ``False`` when this request id + key was stored before."""
        if not request_id:
            raise InvalidArgumentError("request_id", "give the request id of an answered request")
        if not key:
            raise InvalidArgumentError("key", "give a feedback key, e.g. 'correct'")
        return self._writer.submit(self._feedback, request_id, key, score, label, comment)

    def _feedback(self, request_id: str, key: str, score: float | None, label: str, comment: str) -> bool:
        assert self._conn is not None
        if self._conn.execute("SELECT 1 FROM decisions WHERE request_id = ?", (request_id,)).fetchone() is None:
            raise UnknownRequestError(f"no request with id '{request_id}' was answered by this router")
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, key, score, label, comment, time.time()),
        )
        self._conn.commit()
        return cur.rowcount == 1

    # -- reads ---------------------------------------------------------------------------------
    def decision(self, request_id: str) -> dict | None:
        return self._writer.submit(self._decision, request_id).result()

    def _decision(self, request_id: str) -> dict | None:
        assert self._conn is not None
        row = self._conn.execute(
            "SELECT plan_json, outcome_json FROM decisions WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        return {"plan": json.loads(row[0]), "outcome": json.loads(row[1]) if row[1] else None}

    def feedback_count(self, request_id: str) -> int:
        query = "SELECT COUNT(*) FROM feedback WHERE request_id = ?"
        return self._writer.submit(lambda: self._conn.execute(query, (request_id,)).fetchone()[0]).result()

    def close(self) -> None:
        """Flush queued writes and close."""
        self._writer.submit(lambda: self._conn and self._conn.close()).result()
        self._writer.shutdown(wait=True)


def _outcome_summary(outcome: Outcome) -> dict:
    return {
        "text": outcome.text,
        "answer": outcome.answer,
        "votes": outcome.votes,
        "usage": asdict(outcome.usage),
        "timings": asdict(outcome.timings),
        "flags": asdict(outcome.flags),
        "candidates": [
            {"text": c.completion.text, "answer": c.answer, "finish_reason": c.completion.finish_reason.value,
             "tokens": c.completion.completion_tokens, "scores": c.scores, "chosen": c.chosen}
            for c in outcome.candidates
        ],
        "model": outcome.model,
    }
