"""``router store export``: one table of the store as JSON lines or CSV.

The file is opened read-only, so exporting while the server writes is safe (a WAL reader sees the
last commit). JSON lines parse the ``*_json`` columns into objects named without the suffix
(``plan``, ``outcome``); CSV keeps them as JSON text. Rows come oldest first.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

TABLES = {"decisions": "decisions", "feedback": "feedback", "shadow": "shadow_decisions", "runs": "store_runs"}
FORMATS = ("jsonl", "csv")
_ORDER = {"store_runs": "started_at"}


def export(store_path: Path | str, out_path: Path | str, fmt: str = "jsonl", table: str = "decisions") -> int:
    """Write ``table`` (a key of :data:`TABLES`) of the store at ``store_path`` to ``out_path`` ('-': stdout).

    Returns the number of rows. A file is written beside its final name and renamed into place.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if table not in TABLES:
        raise ValueError(f"table must be one of {', '.join(TABLES)}, got {table!r}")
    path = Path(store_path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a store file")
    if not path.is_file():
        raise FileNotFoundError(f"no store at {path}")
    if str(out_path) != "-":
        out_path = _checked_output(Path(out_path), path)
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        name = TABLES[table]
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is None:
            raise ValueError(f"{path} has no {name} table (an older schema): open it with the router once to migrate")
        cursor = conn.execute(f"SELECT * FROM {name} ORDER BY {_ORDER.get(name, 'created_at')}, rowid")
        columns = [d[0] for d in cursor.description]
        with _output(out_path) as out:
            return _write_csv(out, columns, cursor) if fmt == "csv" else _write_jsonl(out, columns, cursor)
    finally:
        conn.close()


def _write_jsonl(out: IO[str], columns: list[str], rows: Iterator[tuple]) -> int:
    keys = [c.removesuffix("_json") for c in columns]
    parse = [c.endswith("_json") for c in columns]
    count = 0
    for row in rows:
        record = {k: json.loads(v) if p and v is not None else v for k, p, v in zip(keys, parse, row, strict=True)}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_csv(out: IO[str], columns: list[str], rows: Iterator[tuple]) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def _checked_output(out: Path, store: Path) -> Path:
    """Where to write: a symlink's target, never the store itself or one of its WAL files, never a
    directory or a device (the file is replaced by renaming, which would swap the node itself)."""
    final = out.resolve()
    db = store.resolve()
    if final in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        raise ValueError(f"--out {out} is the store itself; export to another file")
    if final.exists() and not final.is_file():
        raise ValueError(f"--out {out} is not a regular file (a directory or a device); give a file, or - for stdout")
    return final


@contextlib.contextmanager
def _output(out_path: Path | str) -> Iterator[IO[str]]:
    if str(out_path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    final = Path(out_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``router store export`` (for wiring into the main CLI; then call :func:`run`)."""
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="output format (default: jsonl)")
    parser.add_argument("--out", required=True, help="output file, or - for stdout")
    parser.add_argument("--table", choices=list(TABLES), default="decisions", help="what (default: decisions)")
    parser.add_argument("--db", type=Path, default=None, help="store file (default: the configured server.store_path)")


def run(args: argparse.Namespace) -> int:
    """Run an export from parsed :func:`add_arguments` options; the process exit code."""
    db = args.db
    if db is None:
        from router.config import Settings

        db = Settings().server.store_path
    try:
        count = export(db, args.out, args.format, args.table)
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"router store export: {exc}", file=sys.stderr)
        return 1
    print(f"exported {count} {args.table} rows from {db} to {args.out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``router store export [--format jsonl|csv] --out FILE [--table T] [--db PATH]``."""
    parser = argparse.ArgumentParser(prog="router store export", description="Export the decision store.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
