"""SQLite store of decisions, shadow decisions and feedback.

Every call is queued, in order, to one writer thread that owns the connection: the request path
never waits on disk. The writer takes whatever is queued (up to ``batch_size`` items) and writes
it in one transaction, so a burst costs one commit, not one per row.

Bounds and what is reported:

- At most ``queue_size`` items are held in memory unwritten: an item counts from the moment it
  is accepted until the transaction holding it commits. When the bound is reached a new row is
  refused rather than waited for: ``record_decision``/``record_shadow`` return ``False``,
  ``add_feedback`` answers :class:`OverloadedError`, the ``dropped`` counter grows and a warning
  is logged (at most every 10 s).
- :meth:`SqliteStore.close` writes everything queued before it, then marks this run closed.
- If the process dies instead (SIGKILL, OOM kill, crash), it loses the items still in memory:
  at most ``queue_size``. Each store instance keeps its ``accepted`` and ``dropped`` counters in
  a small memory-mapped file beside the database (``<db>.runs/<run id>.count``) that it holds
  under ``flock``; the kernel keeps that page when the process dies and frees the lock. The
  ``written`` counter is committed in the same transaction as the rows. The next instance to
  open the file finds the unlocked file of an unclosed run, reports ``accepted - written`` as
  lost (exact for a process death; a power loss can also lose the last commits, as
  ``synchronous=NORMAL`` allows, and the counter page) and logs it once. It leaves runs of other
  hosts alone (their locks are not visible here); a run whose counter file is gone is reported
  as lost-unknown.

WAL journal, ``synchronous=NORMAL`` and a busy timeout, so several processes can share a file:
a writer that finds the file locked past the timeout retries the batch while its queue absorbs
(then drops) new rows. The schema is versioned and migrated on open (:mod:`router.store.schema`).
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import json
import logging
import mmap
import os
import socket
import sqlite3
import struct
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from router.domain import Outcome, Plan
from router.errors import InvalidArgumentError, NotReadyError, OverloadedError, UnknownRequestError
from router.store.schema import DECISION_COLUMNS_V2, SCHEMA_VERSION, SchemaVersionError, migrate

__all__ = ["SCHEMA_VERSION", "SchemaVersionError", "SqliteStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Queue item kinds. Writes are batched; a call (read, flush) or stop ends a batch.
_DECISION, _SHADOW, _FEEDBACK, _CALL, _STOP = range(5)
_DROP_LOG_EVERY_S = 10.0

_DECISION_FIELDS = (
    "request_id", "created_at", "policy", "policy_version", "level", "experiment", "arm", "plan_json",
    "outcome_json", *(name for name, _, _ in DECISION_COLUMNS_V2),
)
_INSERT_DECISION = (
    f"INSERT OR REPLACE INTO decisions ({', '.join(_DECISION_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(_DECISION_FIELDS))})"
)
_SHADOW_FIELDS = (
    "request_id", "created_at", "experiment", "arm", "policy", "policy_version", "level", "strategy", "samples",
    "difficulty", "reason", "plan_json",
)
_INSERT_SHADOW = (
    f"INSERT OR REPLACE INTO shadow_decisions ({', '.join(_SHADOW_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(_SHADOW_FIELDS))})"
)


def _retry_while_busy(step: Callable[[], T], timeout_s: float) -> T:
    """Run ``step``, retrying on SQLITE_BUSY until ``timeout_s`` has passed.

    SQLite answers some lock waits at once instead of calling the busy handler: switching a file
    to WAL while another process does the same, or reading the WAL index while another runs its
    recovery. Two processes opening one new file together hit this (seen in CI), so the open
    waits for those the way the busy timeout waits for the rest.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # SQLITE_BUSY_RECOVERY etc. -> SQLITE_BUSY
            if primary not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class SqliteStore:
    """Decisions, shadow decisions and feedback in one SQLite file; writes are queued, never awaited.

    ``path`` may be ``":memory:"`` (tests): no run accounting then.
    """

    def __init__(
        self, path: Path | str, *, queue_size: int = 10_000, batch_size: int = 256, busy_timeout_s: float = 5.0
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError(f"queue_size and batch_size must be >= 1, got {queue_size} and {batch_size}")
        self.path = str(path)
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.run_id = uuid.uuid4().hex
        self.lost_at_last_start = 0  # rows earlier runs accepted and never wrote (they died unclosed)
        self._file_backed = self.path != ":memory:"
        self._cond = threading.Condition()
        self._items: deque[tuple[int, Any, Future | None]] = deque()
        self._pending = 0  # items accepted and not yet finished by the writer
        self._accepted = self._written = self._dropped = self._failed = 0
        self._closed = False
        self._drops_unlogged = 0
        self._last_drop_log = float("-inf")
        self._counters: _RunCounters | None = None
        self._runs_dir = Path(self.path + ".runs")

        if self._file_backed:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            found = _retry_while_busy(lambda: self._prepare(busy_timeout_s), busy_timeout_s)
            if 0 < found < SCHEMA_VERSION:
                log.info("store %s migrated from schema v%d to v%d", self.path, found, SCHEMA_VERSION)
            if self._file_backed:
                self._runs_dir.mkdir(exist_ok=True)
                # The counter file (locked) exists before the run's row and goes after its row says closed.
                self._counters = _RunCounters(self._runs_dir / f"{self.run_id}.count")
                self.lost_at_last_start = self._recover()
                self._conn.execute(
                    "INSERT INTO store_runs (run_id, pid, host, started_at) VALUES (?, ?, ?, ?)",
                    (self.run_id, os.getpid(), socket.gethostname(), time.time()),
                )
        except BaseException:
            self._conn.close()
            if self._counters is not None:
                self._counters.close(remove=True)
            raise
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        # A process that exits without close() still flushes (the writer is a daemon thread).
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    def _prepare(self, busy_timeout_s: float) -> int:
        """Pragmas and migration (idempotent, so safe to retry); returns the schema version found."""
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        found, _ = migrate(self._conn)
        return found

    # -- writes: queued, never blocking ----------------------------------------------------------
    def record_decision(self, request_id: str, plan: Plan, outcome: Outcome | None) -> bool:
        """Queue a decision (``outcome=None``: cancelled); ``False`` when refused (queue full or closed).

        The outcome is serialized on the writer thread: do not mutate it afterwards.
        """
        return self._offer(_DECISION, (request_id, time.time(), plan, outcome), None)

    def record_shadow(self, request_id: str, plan: Plan) -> bool:
        """Queue a shadow arm's decision (logged, not executed); ``False`` when refused."""
        return self._offer(_SHADOW, (request_id, time.time(), plan), None)

    def add_feedback(
        self, request_id: str, key: str, score: float | None, label: str, comment: str
    ) -> Future[bool]:
        """Future of ``True`` when stored now, ``False`` when this request id + key was stored before.

        Runs after every write queued before it, so feedback on a just-recorded decision finds it.
        The future fails with :class:`UnknownRequestError` for an id never recorded,
        :class:`OverloadedError` when the queue is full, :class:`NotReadyError` after close.
        """
        if not request_id:
            raise InvalidArgumentError("request_id", "give the request id of an answered request")
        if not key:
            raise InvalidArgumentError("key", "give a feedback key, e.g. 'correct'")
        future: Future[bool] = Future()
        if not self._offer(_FEEDBACK, (request_id, key, score, label, comment, time.time()), future):
            if self._closed:
                future.set_exception(NotReadyError("the decision store is closed"))
            else:
                future.set_exception(OverloadedError("the decision store is behind; retry feedback later", 1.0))
        return future

    def _offer(self, kind: int, payload: tuple, future: Future | None) -> bool:
        with self._cond:
            accepted = not (self._closed or self._pending >= self.queue_size)
            if accepted:
                self._accepted += 1
                self._pending += 1
                self._items.append((kind, payload, future))
                self._cond.notify()
            else:
                self._dropped += 1
                self._drops_unlogged += 1
            if self._counters is not None:
                self._counters.set(self._accepted, self._dropped)
        if not accepted:
            self._log_drops()
        return accepted

    def _log_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log < _DROP_LOG_EVERY_S:
            return
        with self._cond:
            if now - self._last_drop_log < _DROP_LOG_EVERY_S:
                return
            self._last_drop_log = now
            count, self._drops_unlogged = self._drops_unlogged, 0
            dropped, closed = self._dropped, self._closed
        why = "it is closed" if closed else f"its queue is full ({self.queue_size} rows unwritten)"
        log.warning("decision store dropped %d rows because %s; %d dropped in all", count, why, dropped)

    # -- reads and barriers: run on the writer, after everything queued before them -------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed; ``False`` on timeout."""
        try:
            self._call(lambda conn: None).result(timeout)
        except TimeoutError:
            return False
        return True

    def decision(self, request_id: str) -> dict | None:
        """The recorded plan and outcome summary of a request (``None`` when unknown)."""
        return self._call(functools.partial(_read_decision, request_id)).result()

    def request_id_taken(self, request_id: str) -> Future[str | None]:
        """Future of why ``request_id`` cannot name a new request, or ``None`` when it can.

        An id is taken once a request under it was answered, or was cancelled and then got feedback;
        a request cancelled before any answer may be retried under its id (its row is replaced).
        Runs after every write queued before it, so a decision recorded a moment ago is seen.
        """
        def read(conn: sqlite3.Connection) -> str | None:
            query = "SELECT status, created_at FROM decisions WHERE request_id = ?"
            row = conn.execute(query, (request_id,)).fetchone()
            if row is None:
                return None
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row[1]))
            if row[0] != "cancelled":
                return f"a request under it was answered at {when}"
            if conn.execute("SELECT 1 FROM feedback WHERE request_id = ?", (request_id,)).fetchone() is not None:
                return f"a request under it was cancelled at {when} and has feedback"
            return None

        return self._call(read)

    def shadow_decisions(self, request_id: str) -> list[dict]:
        """The shadow arms' plans logged for a request (never executed)."""
        query = ("SELECT experiment, arm, policy, policy_version, level, difficulty, plan_json "
                 "FROM shadow_decisions WHERE request_id = ? ORDER BY arm")
        keys = ("experiment", "arm", "policy", "policy_version", "level", "difficulty", "plan")

        def read(conn: sqlite3.Connection) -> list[dict]:
            rows = conn.execute(query, (request_id,)).fetchall()
            return [dict(zip(keys, (*r[:-1], json.loads(r[-1])), strict=True)) for r in rows]

        return self._call(read).result()

    def feedback_count(self, request_id: str) -> int:
        """How many feedback keys a request has."""
        query = "SELECT COUNT(*) FROM feedback WHERE request_id = ?"
        return self._call(lambda conn: conn.execute(query, (request_id,)).fetchone()[0]).result()

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise NotReadyError("the decision store is closed")
            self._items.append((_CALL, fn, future))
            self._cond.notify()
        return future

    # -- state -------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``queued`` (unwritten now), ``queue_size``, ``accepted``, ``written``,
        ``dropped`` (refused, queue full or closed), ``failed`` (could not be written) and
        ``lost_at_last_start`` (accepted and never written by earlier runs that died unclosed).
        """
        with self._cond:
            return {
                "queued": self._pending,
                "queue_size": self.queue_size,
                "accepted": self._accepted,
                "written": self._written,
                "dropped": self._dropped,
                "failed": self._failed,
                "lost_at_last_start": self.lost_at_last_start,
            }

    def close(self, timeout: float | None = None) -> bool:
        """Write everything queued, mark this run closed and close; ``False`` if not done in ``timeout``.

        Idempotent. Rows offered after close are refused (and counted as dropped).
        """
        with self._cond:
            if not self._closed:
                self._closed = True
                self._items.append((_STOP, None, None))
                self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                pending = self._pending
            log.error("decision store did not finish writing in %.1f s; %d rows are unwritten", timeout, pending)
            return False
        atexit.unregister(self._atexit)
        return True

    # -- the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch, control = self._take()
            if batch:
                try:
                    self._write(batch)
                except Exception:  # never let the writer die: the queue would only fill
                    log.exception("decision store: unexpected error writing %d rows", len(batch))
                    self._finish(batch, ok=0, failed=len(batch), error=RuntimeError("decision store write failed"))
            if control is None:
                continue
            kind, fn, future = control
            if kind == _STOP:
                self._shutdown()
                return
            assert future is not None
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(self._conn))
                except BaseException as exc:
                    future.set_exception(exc)

    def _take(self) -> tuple[list[tuple[int, Any, Future | None]], tuple[int, Any, Future | None] | None]:
        """Up to ``batch_size`` writes, or one call/stop (which waits for the writes before it)."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            batch: list[tuple[int, Any, Future | None]] = []
            while self._items and len(batch) < self.batch_size:
                if self._items[0][0] >= _CALL:
                    if not batch:
                        return batch, self._items.popleft()
                    break
                batch.append(self._items.popleft())
            return batch, None

    def _write(self, batch: list[tuple[int, Any, Future | None]]) -> None:
        ops: list[tuple[int, tuple, Future | None]] = []
        bad = 0
        for kind, payload, future in batch:
            if kind == _FEEDBACK:
                ops.append((kind, payload, future))
                continue
            try:
                row = _decision_row(*payload) if kind == _DECISION else _shadow_row(*payload)
            except Exception:
                log.exception("decision store: cannot serialize the row of request %r; skipped", payload[0])
                bad += 1
                continue
            ops.append((kind, row, None))
        ok = len(batch) - bad
        delay, warned_at = 0.01, float("-inf")
        while True:
            try:
                answers = self._commit(ops, written_after=self._written + ok)
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    log.exception("decision store: writing %d rows failed", len(ops))
                    self._finish(batch, ok=0, failed=len(batch), error=exc)
                    return
                if time.monotonic() - warned_at >= _DROP_LOG_EVERY_S:
                    warned_at = time.monotonic()
                    log.warning("decision store: file locked by another writer (%s); retrying %d rows", exc, len(ops))
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sqlite3.Error as exc:
                log.exception("decision store: writing %d rows failed", len(ops))
                self._finish(batch, ok=0, failed=len(batch), error=exc)
                return
        for future, answer in answers:
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        self._finish(batch, ok=ok, failed=bad, error=None)

    def _commit(
        self, ops: list[tuple[int, tuple, Future | None]], written_after: int
    ) -> list[tuple[Future, bool | BaseException]]:
        """One transaction: rows in order, feedback answered against what precedes it."""
        conn = self._conn
        answers: list[tuple[Future, bool | BaseException]] = []
        decisions: list[tuple] = []
        shadows: list[tuple] = []

        def write_rows() -> None:
            if decisions:
                conn.executemany(_INSERT_DECISION, decisions)
                decisions.clear()
            if shadows:
                conn.executemany(_INSERT_SHADOW, shadows)
                shadows.clear()

        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, row, future in ops:
                if kind == _DECISION:
                    decisions.append(row)
                elif kind == _SHADOW:
                    shadows.append(row)
                else:
                    assert future is not None
                    write_rows()
                    answers.append((future, _feedback_in_txn(conn, *row)))
            write_rows()
            if self._file_backed:
                conn.execute("UPDATE store_runs SET written = ? WHERE run_id = ?", (written_after, self.run_id))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return answers

    def _finish(
        self, batch: list[tuple[int, Any, Future | None]], ok: int, failed: int, error: BaseException | None
    ) -> None:
        if error is not None:
            for _, _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(error)
        with self._cond:
            self._written += ok
            self._failed += failed
            self._pending -= len(batch)

    def _shutdown(self) -> None:
        closed = False
        try:
            if self._file_backed:
                with self._cond:
                    accepted, dropped, written = self._accepted, self._dropped, self._written
                self._conn.execute(
                    "UPDATE store_runs SET closed_at = ?, accepted = ?, dropped = ?, written = ? WHERE run_id = ?",
                    (time.time(), accepted, dropped, written, self.run_id),
                )
            closed = True
        except sqlite3.Error:
            log.exception("decision store: could not mark run %s closed; the next start will account for it",
                          self.run_id)
        finally:
            self._conn.close()
            with self._cond:
                counters, self._counters = self._counters, None
            if counters is not None:
                counters.close(remove=closed)

    # -- accounting for runs that died -------------------------------------------------------------
    def _recover(self) -> int:
        """Report runs on this host that died without closing; returns the rows they lost."""
        conn = self._conn
        host = socket.gethostname()
        lost_total = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT run_id, pid, started_at, written FROM store_runs "
                "WHERE closed_at IS NULL AND reported_at IS NULL AND run_id != ? AND host = ?",
                (self.run_id, host),
            ).fetchall()
            for run_id, pid, started_at, written in rows:
                state = _probe_counters(self._runs_dir / f"{run_id}.count")
                if state == "alive":
                    continue
                accepted, dropped = state if state != "missing" else (None, None)
                lost = None if accepted is None else max(0, accepted - written)
                conn.execute(
                    "UPDATE store_runs SET accepted = ?, dropped = ?, lost = ?, reported_at = ? WHERE run_id = ?",
                    (accepted, dropped, lost, time.time(), run_id),
                )
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))
                if lost is None:
                    log.warning("decision store: run %s (pid %d, started %s) ended without closing; its counter "
                                "file is gone, so how many rows it lost is unknown (%d were written)",
                                run_id, pid, started, written)
                else:
                    lost_total += lost
                    log.warning("decision store: run %s (pid %d, started %s) ended without closing: %d rows "
                                "accepted, %d written, %d lost unwritten, %d dropped on a full queue",
                                run_id, pid, started, accepted, written, lost, dropped)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._remove_stale_counter_files()
        return lost_total

    def _remove_stale_counter_files(self) -> None:
        """Counter files of runs closed or already reported (or never registered) whose owner is gone."""
        for file in self._runs_dir.glob("*.count"):
            run_id = file.stem
            if run_id == self.run_id:
                continue
            row = self._conn.execute(
                "SELECT closed_at IS NULL AND reported_at IS NULL FROM store_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is not None and row[0]:
                continue  # unclosed, unreported: alive (or another host's)
            if _probe_counters(file) != "alive":
                file.unlink(missing_ok=True)


class _RunCounters:
    """``accepted`` and ``dropped`` of one store instance, in a memory-mapped file held under ``flock``.

    Updating them is a store to memory, no system call; the page outlives the process.
    """

    FORMAT = "<8sQQ"
    MAGIC = b"RTSTORE1"
    SIZE = struct.calcsize(FORMAT)

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, self.SIZE)
            self._mm = mmap.mmap(fd, self.SIZE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd = fd
        struct.pack_into(self.FORMAT, self._mm, 0, self.MAGIC, 0, 0)

    def set(self, accepted: int, dropped: int) -> None:
        struct.pack_into("<QQ", self._mm, 8, accepted, dropped)

    def close(self, remove: bool) -> None:
        self._mm.close()
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the lock


def _probe_counters(path: Path) -> tuple[int, int] | str:
    """``(accepted, dropped)`` of a dead run's counter file, ``"alive"`` when its owner holds it, or ``"missing"``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "missing"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "alive"
        data = os.read(fd, _RunCounters.SIZE)
        if len(data) < _RunCounters.SIZE or data[:8] != _RunCounters.MAGIC:
            return "missing"
        _, accepted, dropped = struct.unpack(_RunCounters.FORMAT, data)
        return accepted, dropped
    finally:
        os.close(fd)


def _close_at_exit(ref: weakref.ref[SqliteStore]) -> None:
    store = ref()
    if store is not None:
        store.close(timeout=10.0)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


# -- rows ------------------------------------------------------------------------------------------
def _feedback_in_txn(
    conn: sqlite3.Connection, request_id: str, key: str, score: float | None, label: str, comment: str,
    created_at: float,
) -> bool | BaseException:
    if conn.execute("SELECT 1 FROM decisions WHERE request_id = ?", (request_id,)).fetchone() is None:
        return UnknownRequestError(f"no request with id '{request_id}' was answered by this router")
    cur = conn.execute(
        "INSERT OR IGNORE INTO feedback (request_id, key, score, label, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (request_id, key, score, label, comment, created_at),
    )
    return cur.rowcount == 1


def _read_decision(request_id: str, conn: sqlite3.Connection) -> dict | None:
    row = conn.execute(
        "SELECT created_at, plan_json, outcome_json FROM decisions WHERE request_id = ?", (request_id,)
    ).fetchone()
    if row is None:
        return None
    return {"created_at": row[0], "plan": json.loads(row[1]), "outcome": json.loads(row[2]) if row[2] else None}


def _plan_dict(plan: Plan) -> dict:
    out = {f.name: getattr(plan, f.name) for f in fields(plan)}
    out["sampling"] = asdict(plan.sampling)
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in out.items()}


def _decision_row(request_id: str, created_at: float, plan: Plan, outcome: Outcome | None) -> tuple:
    values: dict[str, Any] = {
        "request_id": request_id, "created_at": created_at, "policy": plan.policy,
        "policy_version": plan.policy_version, "level": plan.level, "experiment": plan.experiment, "arm": plan.arm,
        "plan_json": json.dumps(_plan_dict(plan), default=str),
        "outcome_json": None if outcome is None else json.dumps(_outcome_summary(outcome), default=str),
        "strategy": plan.strategy, "samples": plan.samples, "difficulty": plan.difficulty, "reason": plan.reason,
        "capped_by_budget": int(plan.capped_by_budget), "max_new_tokens": plan.sampling.max_new_tokens,
        "estimated_tokens": plan.estimated_tokens, "estimated_latency_ms": plan.estimated_latency_ms,
        "status": "cancelled" if outcome is None else "ok",
    }
    if outcome is not None:
        u, t, f = outcome.usage, outcome.timings, outcome.flags
        values.update(
            model=outcome.model, answer=outcome.answer, prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens, samples_used=u.samples, model_calls=u.model_calls,
            queue_ms=t.queue_ms, classify_ms=t.classify_ms, generate_ms=t.generate_ms, total_ms=t.total_ms,
            degraded=int(f.degraded), truncated_by_deadline=int(f.truncated_by_deadline),
            truncated_by_budget=int(f.truncated_by_budget),
        )
    return tuple(values.get(name) for name in _DECISION_FIELDS)


def _shadow_row(request_id: str, created_at: float, plan: Plan) -> tuple:
    values = {
        "request_id": request_id, "created_at": created_at, "experiment": plan.experiment, "arm": plan.arm,
        "policy": plan.policy, "policy_version": plan.policy_version, "level": plan.level,
        "strategy": plan.strategy, "samples": plan.samples, "difficulty": plan.difficulty, "reason": plan.reason,
        "plan_json": json.dumps(_plan_dict(plan), default=str),
    }
    return tuple(values[name] for name in _SHADOW_FIELDS)


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
