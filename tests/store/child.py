"""A store in a separate process, for the crash and multi-process tests: ``python -m tests.store.child MODE ...``.

- ``crash PATH FLUSHED MORE QUEUE_SIZE BLOCK``: record FLUSHED rows ``a<i>`` (all: retried until the
  queue takes them) and flush them (prints
  ``FLUSHED <json stats>``); if BLOCK, hold the file's write lock from another connection so the writer stalls;
  offer MORE rows ``b<i>``, print ``ACCEPTED <json: stats and accepted b indices>``, then wait to
  be killed (BLOCK) or SIGKILL itself at once (not BLOCK: the writer is still busy).
- ``writer PATH PREFIX N``: record N decisions with feedback each, print ``READY``, wait for a line
  on stdin, close cleanly and print ``CLOSED <json stats>``.
- ``opener PATH``: print ``WAITING``, open a store on PATH when a line arrives on stdin (so several
  children open together), close it and print ``OPENED`` (or ``FAILED <error>``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time

from router.store import SqliteStore
from tests.store.helpers import PLAN, outcome


def crash(path: str, flushed: int, more: int, queue_size: int, block: bool) -> None:
    store = SqliteStore(path, queue_size=queue_size, batch_size=32)
    for i in range(flushed):
        while not store.record_decision(f"a{i}", PLAN, outcome()):  # queue full: let it drain
            store.flush(timeout=30)
    assert store.flush(timeout=30)
    print("FLUSHED", json.dumps(store.stats()), flush=True)
    if block:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    accepted = [i for i in range(more) if store.record_decision(f"b{i}", PLAN, outcome())]
    print("ACCEPTED", json.dumps({"stats": store.stats(), "accepted": accepted}), flush=True)
    if not block:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def writer(path: str, prefix: str, n: int) -> None:
    store = SqliteStore(path)
    futures = []
    for i in range(n):
        store.record_decision(f"{prefix}{i}", PLAN, outcome())
        futures.append(store.add_feedback(f"{prefix}{i}", "correct", 1.0, "", ""))
    assert all(f.result(timeout=30) for f in futures)
    print("READY", flush=True)
    sys.stdin.readline()
    assert store.close(timeout=30)
    print("CLOSED", json.dumps(store.stats()), flush=True)


def opener(path: str) -> None:
    print("WAITING", flush=True)
    sys.stdin.readline()
    try:
        store = SqliteStore(path)
    except sqlite3.Error as exc:
        print("FAILED", repr(exc), flush=True)
        return
    assert store.close(timeout=30)
    print("OPENED", flush=True)


if __name__ == "__main__":
    mode, path, *rest = sys.argv[1:]
    if mode == "crash":
        crash(path, int(rest[0]), int(rest[1]), int(rest[2]), rest[3] == "1")
    elif mode == "opener":
        opener(path)
    else:
        writer(path, rest[0], int(rest[1]))
