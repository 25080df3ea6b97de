"""The store's schema and its migrations.

``meta.schema_version`` says which migrations a file has had. Opening a file runs the missing
ones in order, all in one ``BEGIN IMMEDIATE`` transaction (SQLite DDL is transactional), so a
failed migration leaves the file as it was and two processes opening one file migrate it once.
A fresh file runs every migration from 0, so the upgrade path is the path every file takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 2


class SchemaVersionError(RuntimeError):
    """The file was written by a newer router whose schema this code does not know."""


# v1: the first store (decisions as JSON, idempotent feedback). Kept verbatim: old files have it.
_V1 = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS decisions (
        request_id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        policy TEXT NOT NULL, policy_version TEXT NOT NULL, level TEXT NOT NULL,
        experiment TEXT NOT NULL, arm TEXT NOT NULL,
        plan_json TEXT NOT NULL,
        outcome_json TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        request_id TEXT NOT NULL REFERENCES decisions(request_id),
        key TEXT NOT NULL,
        score REAL, label TEXT NOT NULL, comment TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (request_id, key)
    )""",
)

# Columns v2 adds to decisions, for analysis without parsing JSON, and how to fill them from v1 rows.
DECISION_COLUMNS_V2: tuple[tuple[str, str, str], ...] = (
    # name, type, backfill expression over plan_json / outcome_json
    ("strategy", "TEXT", "json_extract(plan_json, '$.strategy')"),
    ("samples", "INTEGER", "json_extract(plan_json, '$.samples')"),
    ("difficulty", "REAL", "json_extract(plan_json, '$.difficulty')"),
    ("reason", "TEXT", "json_extract(plan_json, '$.reason')"),
    ("capped_by_budget", "INTEGER", "json_extract(plan_json, '$.capped_by_budget')"),
    ("max_new_tokens", "INTEGER", "json_extract(plan_json, '$.sampling.max_new_tokens')"),
    ("estimated_tokens", "REAL", "json_extract(plan_json, '$.estimated_tokens')"),
    ("estimated_latency_ms", "REAL", "json_extract(plan_json, '$.estimated_latency_ms')"),
    ("status", "TEXT", "CASE WHEN outcome_json IS NULL THEN 'cancelled' ELSE 'ok' END"),
    ("model", "TEXT", "json_extract(outcome_json, '$.model')"),
    ("answer", "TEXT", "json_extract(outcome_json, '$.answer')"),
    ("prompt_tokens", "INTEGER", "json_extract(outcome_json, '$.usage.prompt_tokens')"),
    ("completion_tokens", "INTEGER", "json_extract(outcome_json, '$.usage.completion_tokens')"),
    ("samples_used", "INTEGER", "json_extract(outcome_json, '$.usage.samples')"),
    ("model_calls", "INTEGER", "json_extract(outcome_json, '$.usage.model_calls')"),
    ("queue_ms", "REAL", "json_extract(outcome_json, '$.timings.queue_ms')"),
    ("classify_ms", "REAL", "json_extract(outcome_json, '$.timings.classify_ms')"),
    ("generate_ms", "REAL", "json_extract(outcome_json, '$.timings.generate_ms')"),
    ("total_ms", "REAL", "json_extract(outcome_json, '$.timings.total_ms')"),
    ("degraded", "INTEGER", "json_extract(outcome_json, '$.flags.degraded')"),
    ("truncated_by_deadline", "INTEGER", "json_extract(outcome_json, '$.flags.truncated_by_deadline')"),
    ("truncated_by_budget", "INTEGER", "json_extract(outcome_json, '$.flags.truncated_by_budget')"),
)

_V2_TABLES = (
    # Shadow arms of an experiment: a decision that was logged, not executed.
    """CREATE TABLE shadow_decisions (
        request_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        experiment TEXT NOT NULL, arm TEXT NOT NULL,
        policy TEXT NOT NULL, policy_version TEXT NOT NULL,
        level TEXT NOT NULL, strategy TEXT NOT NULL, samples INTEGER NOT NULL,
        difficulty REAL, reason TEXT NOT NULL,
        plan_json TEXT NOT NULL,
        PRIMARY KEY (request_id, experiment, arm)
    )""",
    # One row per store instance that opened this file: what it wrote, and whether it closed.
    # A run that never closed is reported once by the next instance to open the file.
    """CREATE TABLE store_runs (
        run_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL, host TEXT NOT NULL,
        started_at REAL NOT NULL,
        written INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER, dropped INTEGER,
        closed_at REAL,
        lost INTEGER, reported_at REAL
    )""",
    "CREATE INDEX decisions_created_at ON decisions(created_at)",
    "CREATE INDEX decisions_experiment_arm ON decisions(experiment, arm)",
    "CREATE INDEX shadow_created_at ON shadow_decisions(created_at)",
)


def _v1(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    for name, sql_type, _ in DECISION_COLUMNS_V2:
        conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {sql_type}")
    conn.execute(
        "UPDATE decisions SET " + ", ".join(f"{name} = {expr}" for name, _, expr in DECISION_COLUMNS_V2)
    )
    for statement in _V2_TABLES:
        conn.execute(statement)


# MIGRATIONS[v] takes a file from version v - 1 to version v.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1, 2: _v2}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; 0 for a file the store never opened."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the file to :data:`SCHEMA_VERSION`; returns (version found, version now).

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raises
    :class:`SchemaVersionError` for a file newer than this code, leaving it untouched.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store file has schema version {found}, newer than this router knows ({SCHEMA_VERSION}); "
                "upgrade the router or point store_path at another file"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found, SCHEMA_VERSION
