"""The committed labels were made with the ladder the router ships: a level whose sampling or
options changed since makes the classifier predict success of runs the router no longer does."""

from __future__ import annotations

import json

from router.difficulty.labels import LABEL_LEVELS, LABELS, label_policy
from router.evaluation.runner import read_results


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
