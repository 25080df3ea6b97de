"""``router store export``: every table to JSON lines and CSV, from a file the server may be writing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from router.store import SqliteStore
from router.store.export import export, main
from tests.store.helpers import PLAN, SHADOW_PLAN, outcome


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    store.record_decision("r1", PLAN, outcome("1"))
    store.record_decision("r2", PLAN, None)
    store.record_shadow("r1", SHADOW_PLAN)
    assert store.add_feedback("r1", "correct", 1.0, "good", "a, \"quoted\"\ncomment").result(timeout=10)
    store.close()
    return path


def test_jsonl_parses_the_json_columns(store_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "d.jsonl"
    assert export(store_file, out, "jsonl", "decisions") == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["plan"]["sampling"]["max_new_tokens"] == 8 and rows[0]["outcome"]["answer"] == "1"
    assert rows[0]["completion_tokens"] == 2 and rows[0]["status"] == "ok"
    assert rows[1]["outcome"] is None and rows[1]["status"] == "cancelled"
    assert not (tmp_path / "out" / "d.jsonl.partial").exists()


def test_csv_of_each_table(store_file: Path, tmp_path: Path) -> None:
    common = ["--db", str(store_file), "--format", "csv"]
    assert main([*common, "--table", "feedback", "--out", str(tmp_path / "f.csv")]) == 0
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["comment"] == "a, \"quoted\"\ncomment" and rows[0]["score"] == "1.0"
    assert main([*common, "--table", "shadow", "--out", str(tmp_path / "s.csv")]) == 0
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["arm"] == "B" and json.loads(rows[0]["plan_json"])["samples"] == 5
    assert export(store_file, tmp_path / "runs.csv", "csv", "runs") == 1


def test_errors_name_the_problem(store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "missing.sqlite3"), "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "no store at" in capsys.readouterr().err
    with pytest.raises(ValueError, match="format must be one of"):
        export(store_file, tmp_path / "x", "xml")
    with pytest.raises(SystemExit):
        main(["--db", str(store_file), "--out", "x", "--table", "nope"])


def test_the_output_never_replaces_the_store_a_directory_or_a_link(store_file: Path, tmp_path: Path) -> None:
    before = store_file.read_bytes()
    for out in (store_file, Path(f"{store_file}-wal"), tmp_path):
        with pytest.raises(ValueError, match="the store itself|not a regular file"):
            export(store_file, out)
    assert store_file.read_bytes() == before
    assert main(["--db", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 1  # a directory is no store
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert export(store_file, link) == 2
    assert link.is_symlink() and link.resolve() == target.resolve()  # written through the link
    assert len(target.read_text().splitlines()) == 2
