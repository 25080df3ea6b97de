"""The committed labels were made with the ladder the router ships: a level whose sampling or
options changed since makes the classifier predict success of runs the router no longer does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.difficulty.labels import LABEL_LEVELS, LABELS, label_policy
from router.difficulty.labels import main as labels_main
from router.evaluation.datasets import label_set
from router.evaluation.runner import read_results
from router.verifiers.reward_model import committed_sha256


def test_labels_were_made_with_the_shipped_ladder() -> None:
    meta = json.loads(LABELS.with_suffix(".meta.json").read_text())
    ladder = {lv.name: repr(lv) for lv in label_policy().levels}
    assert meta["levels"] == ladder, "the ladder changed: remake the labels with `router difficulty labels`"


def test_every_question_has_every_level_once() -> None:
    rows = read_results(LABELS)
    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r["level"])
    assert by_id and all(sorted(levels) == sorted(LABEL_LEVELS) for levels in by_id.values())


def test_labels_were_made_with_the_committed_reward_model() -> None:
    """``best_of_n_rm`` rows rank samples by the reward model: retraining it means relabelling that
    level (``router difficulty labels --redo best_of_n_rm``)."""
    meta = json.loads(LABELS.with_suffix(".meta.json").read_text())
    assert meta.get("reward_model_sha256") == committed_sha256(), "run `router difficulty labels --redo best_of_n_rm`"


def test_redo_runs_one_level_again_on_the_labelled_questions_only(
    tiny_dir: Path, tiny_hf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTER_MODELS_DIR", str(tiny_dir.parent))
    monkeypatch.setenv("ROUTER_MODEL", tiny_dir.name)
    labelled = [q for q, _ in label_set(1, 1, seed=2)[:2]]
    out = tmp_path / "labels.jsonl"
    old = [{"id": q.id, "level": lv, "correct": False, "latency_ms": -1.0} for q in labelled for lv in LABEL_LEVELS]
    out.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert labels_main(["--per-family", "1", "--per-task", "1", "--redo", "single", "--out", str(out)]) == 0
    rows = read_results(out)
    assert sorted((r["id"], r["level"]) for r in rows) == sorted((r["id"], r["level"]) for r in old)
    redone = [r for r in rows if r["level"] == "single"]
    kept = [r for r in rows if r["level"] != "single"]
    assert all(r["latency_ms"] > 0 and "question" in r for r in redone)  # really run again
    assert all(r["latency_ms"] == -1.0 for r in kept)  # the other levels untouched
    # Questions outside the given question set would lose the level's rows: refused, file untouched.
    before = out.read_text()
    with pytest.raises(SystemExit, match="not in the question set"):
        labels_main(["--per-family", "1", "--per-task", "1", "--seed", "3", "--redo", "single", "--out", str(out)])
    assert out.read_text() == before


def test_an_out_that_is_not_label_rows_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nno newline at the end")
    with pytest.raises(SystemExit, match="is not a file of label rows"):
        labels_main(["--out", str(notes)])
    assert notes.read_text() == "my notes\nno newline at the end"  # untouched: no torn line cut
    with pytest.raises(SystemExit, match="is a directory"):
        labels_main(["--out", str(tmp_path)])
