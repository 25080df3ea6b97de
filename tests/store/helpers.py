"""Plans and outcomes for the store tests, and a way to read a store file directly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import MappingProxyType

from router.domain import Candidate, Flags, Outcome, Plan, Timings, Usage
from router.engine import Completion, FinishReason, SamplingParams

PLAN = Plan("single", "single", 1, SamplingParams(max_new_tokens=8), "fixed", "abc123", "test")
# Mappings as read-only proxies, as a frozen policy may hand them out.
SHADOW_PLAN = Plan("vote", "self_consistency", 5, SamplingParams(temperature=0.7, stop=("\n\n",)), "ladder", "def456",
                   "shadow arm", difficulty=0.8, experiment="exp1", arm="B",
                   options=MappingProxyType({"verifier": "majority"}), predicted=MappingProxyType({"vote": 0.9}),
                   estimated_tokens=640.0, estimated_latency_ms=1200.0)


def outcome(answer: str = "42") -> Outcome:
    comp = Completion(0, answer, [1, 2], [-0.1, -0.2], FinishReason.EOS, 10)
    return Outcome(answer, answer, [Candidate(comp, answer, chosen=True)], {answer: 1}, Usage(10, 2, 1, 1),
                   Flags(truncated_by_budget=True), Timings(1.0, 2.0, 3.0, 6.0))


def query(path: Path | str, sql: str, *args: object) -> list[tuple]:
    """Rows of ``sql`` read straight from the file (not through a store)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
