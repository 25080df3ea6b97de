"""Training: label loading, Platt scaling folded into the weights, ONNX parity, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router.difficulty.scorer import CARD_FILE, MODEL_FILE
from router.difficulty.train import (
    EDGE_TEXTS,
    PARITY_TOLERANCE,
    DifficultyModel,
    Labels,
    expected_calibration_error,
    export_onnx,
    fit,
    load_labels,
    main,
    onnx_predict,
    onnx_session,
    platt,
    sigmoid,
)
from tests.difficulty.conftest import LEVELS, train_part, write_synthetic_labels


def test_labels_keep_only_questions_with_every_level(synthetic_path: Path, tmp_path: Path) -> None:
    rows = synthetic_path.read_text().splitlines()
    partial = json.loads(rows[0]) | {"id": "addition-x-1", "level": "single"}
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join([*rows, json.dumps(partial)]) + '\n{"id": "torn', encoding="utf-8")
    labels = load_labels(path)
    assert labels.levels == LEVELS
    assert labels.incomplete == 1 and "addition-x-1" not in labels.ids
    assert labels.y.shape == (len(rows) // 3, 3) and len(labels.texts) == len(labels.splits) == len(labels.ids)
    assert set(labels.splits) == {"train", "test", "unseen"}
    assert set(labels.families[labels.select("unseen")]) == {"successor"}
    first = [json.loads(r) for r in rows[:3]]
    assert labels.y[0].tolist() == [int(r["correct"]) for r in first]


def test_onnx_matches_sklearn(synthetic: Labels, synthetic_model: DifficultyModel) -> None:
    """Every synthetic question and the edge texts, batched and one at a time."""
    session = onnx_session(export_onnx(synthetic_model))
    texts = [*synthetic.texts, *EDGE_TEXTS, "What is 12\x00 * 8?"]
    want = synthetic_model.predict_proba(texts)
    for batch in (True, False):
        got = onnx_predict(session, texts, batch=batch)
        assert got.shape == (len(texts), 3)
        np.testing.assert_allclose(got, want, atol=PARITY_TOLERANCE, rtol=0)
    assert want.std(axis=0).min() > 0.05  # the check is not vacuous: predictions vary


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=20_000)
    y = rng.random(z.size) < sigmoid(2.0 * z - 1.0)
    a, b = platt(z, y)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-1.0, abs=0.1)


def test_platt_never_inverts_a_ranking() -> None:
    z = np.linspace(-3, 3, 200)
    a, b = platt(z, z < 0)  # logits anti-correlated with the outcome
    assert a == 0.0 and sigmoid(b) == pytest.approx(0.5, abs=0.01)


def test_folded_platt_equals_calibrator_applied_after(synthetic: Labels, synthetic_model: DifficultyModel) -> None:
    m = synthetic_model
    assert m.calibration_ == ["platt"] * 3 and np.abs(m.platt_[:, 0] - 1).max() > 0.05  # calibration does something
    z = m.raw_decision_function(synthetic.texts)
    separate = sigmoid(m.platt_[:, 0] * z + m.platt_[:, 1])
    np.testing.assert_allclose(m.predict_proba(synthetic.texts), separate, rtol=0, atol=1e-12)


def test_calibration_does_not_worsen_ece_of_an_overconfident_model(synthetic: Labels) -> None:
    texts, y = train_part(synthetic)
    held_out = ~synthetic.select("train")
    probe = [t for t, keep in zip(synthetic.texts, held_out, strict=True) if keep]
    ece = {}
    for calibrate in (False, True):
        model = fit(texts, y, synthetic.levels, C=1000.0, calibrate=calibrate)
        p = model.predict_proba(probe)
        ece[calibrate] = np.mean([expected_calibration_error(p[:, j], synthetic.y[held_out, j]) for j in range(3)])
    assert ece[True] <= ece[False] - 0.05, ece


def test_ece_of_known_bins() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    y = np.array([0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(p, y) == pytest.approx((2 * 0.05 + 2 * 0.05 + 2 * 0.05) / 6)
    assert expected_calibration_error(np.full(4, 0.9), np.array([1, 0, 0, 0])) == pytest.approx(0.65)


def test_a_level_with_one_class_is_its_base_rate(synthetic: Labels) -> None:
    texts, y = train_part(synthetic)
    y = np.column_stack([y[:, 0], np.ones(len(texts), dtype=np.int8)])
    model = fit(texts, y, ["single", "always"])
    assert model.calibration_ == ["platt", "constant"]
    p = model.predict_proba([*texts[:5], ""])
    assert np.allclose(p[:, 1], 1 - 0.5 / len(texts)) and np.ptp(p[:, 0]) > 0
    np.testing.assert_allclose(onnx_predict(onnx_session(export_onnx(model)), [*texts[:5], ""]), p, atol=1e-4)


def test_training_is_deterministic(synthetic: Labels, synthetic_model: DifficultyModel) -> None:
    texts, y = train_part(synthetic)
    again = fit(texts, y, synthetic.levels)
    np.testing.assert_array_equal(again.coef_, synthetic_model.coef_)
    np.testing.assert_array_equal(again.intercept_, synthetic_model.intercept_)
    assert export_onnx(again).SerializeToString() == export_onnx(synthetic_model).SerializeToString()
    other_seed = fit(texts, y, synthetic.levels, seed=1)
    assert not np.array_equal(other_seed.platt_, synthetic_model.platt_)  # the seed is used (CV folds)


EXPORT_SHA = """
import hashlib, sys
from pathlib import Path
from router.difficulty.train import export_onnx, fit, load_labels
labels = load_labels(Path(sys.argv[1]))
train = labels.select("train")
model = fit([t for t, k in zip(labels.texts, train) if k], labels.y[train], labels.levels)
print(hashlib.sha256(export_onnx(model).SerializeToString()).hexdigest())
"""


def test_export_is_byte_identical_across_processes(synthetic_path: Path) -> None:
    """Other hash seeds (set order) must not change the file: the card's sha256 is reproducible."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", EXPORT_SHA, str(synthetic_path)], cwd=root, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": str(root)})
        for seed in ("1", "2", "5")
    ]
    shas = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(shas) == 1 and len(shas.pop()) == 64


# ------------------------------------------------------------------ bad labels, safe writes


@pytest.fixture(scope="module")
def small_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_labels(tmp_path_factory.mktemp("small") / "labels.jsonl", per_family=15)


def train_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(("make", "message"), [
    (None, "labels file {path} does not exist"),
    ("dir", "labels file {path} is a directory"),
    (b"", "no label rows in {path}: the file is empty"),
    (bytes(range(128, 256)), "no label rows in {path}: 1 line(s) are not label rows, e.g. {path}:1: not UTF-8 text"),
    ("policy", "no label rows in {path}: its 12 row(s) are of a policy's own choice (level policy:NAME"),
])
def test_labels_with_nothing_to_train_on_are_refused(tmp_path: Path, small_path: Path, capsys: pytest.CaptureFixture,
                                                     make: object, message: str) -> None:
    path, out_dir = tmp_path / "labels.jsonl", tmp_path / "artifacts"
    if make == "dir":
        path.mkdir()
    elif make == "policy":  # what `router eval --route` writes: a policy's choice, not a level
        rows = [json.loads(r) | {"level": "policy:adaptive"} for r in small_path.read_text().splitlines()[:12]]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif isinstance(make, bytes):
        path.write_bytes(make)
    rc, out, err = train_cli(["--labels", str(path), "--out-dir", str(out_dir)], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message.format(path=path) in err
    assert not out_dir.exists()


def test_bad_lines_and_policy_rows_are_counted_and_left_out(synthetic_path: Path, tmp_path: Path) -> None:
    rows = [json.loads(r) for r in synthetic_path.read_text().splitlines()]
    lines = [json.dumps(r | {"level": "policy:adaptive"}).encode() for r in rows[:9:3]]
    wrong = next(i for i, r in enumerate(rows) if r["correct"] is False and i >= 3)  # not the first level's row
    rows[wrong]["correct"] = "false"  # bool("false") is True
    lines = [json.dumps(r).encode() for r in rows] + lines
    lines += [b'{"id": "\xff", "level": "single"}', b'{"id": "torn']
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b"\n".join(lines))
    labels = load_labels(path)
    assert labels.levels == LEVELS  # no "policy:adaptive" column
    assert labels.policy_rows == 3
    n = len(rows)
    assert labels.skipped == ((wrong + 1, "'correct' must be true or false, got \"false\""),
                              (n + 4, "not UTF-8 text"), (n + 5, "not JSON"))
    assert labels.incomplete == 1 and rows[wrong]["id"] not in labels.ids  # its level has no usable row


def test_train_says_what_it_left_out(small_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [json.loads(r) for r in small_path.read_text().splitlines()]
    policy = [r | {"level": "policy:adaptive"} for r in rows[:4]]
    rows[3]["correct"] = "true"
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *policy]))
    out_dir = tmp_path / "artifacts"
    rc, _, err = train_cli(["--labels", str(path), "--out-dir", str(out_dir)], capsys)
    assert rc == 0, err
    assert f"skipped 1 line(s) that are not label rows: {path}:4: 'correct' must be true or false, got \"true\"" in err
    assert "left out 4 row(s) of a policy's own choice (level policy:NAME)" in err
    card = json.loads((out_dir / CARD_FILE).read_text())
    assert card["output"]["levels"] == list(LEVELS)
    assert (card["data"]["lines_skipped"], card["data"]["policy_rows_left_out"]) == (1, 4)


def old_pair(out_dir: Path) -> dict[str, bytes]:
    out_dir.mkdir()
    (out_dir / MODEL_FILE).write_bytes(b"the previous model")
    (out_dir / CARD_FILE).write_text('{"sha256": "of the previous model"}')
    return {p.name: p.read_bytes() for p in out_dir.iterdir()}


def test_a_failed_write_leaves_the_previous_model_and_card(small_path: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import router.difficulty.train as train_module

    def full_disk(card: dict, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "write_readme", full_disk)  # the last file written
    out_dir = tmp_path / "artifacts"
    before = old_pair(out_dir)
    rc, out, err = train_cli(["--labels", str(small_path), "--out-dir", str(out_dir)], capsys)
    assert rc == 2 and out == ""
    assert err.endswith(f"error: cannot write the classifier to {out_dir}: No space left on device\n")
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before  # no new model, no temporary directory


def test_an_artifact_name_taken_by_a_directory_is_refused_before_training(small_path: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "artifacts"
    old_pair(out_dir)
    (out_dir / CARD_FILE).unlink()
    (out_dir / CARD_FILE).mkdir()  # the model could be replaced, its card could not
    rc, out, err = train_cli(["--labels", str(small_path), "--out-dir", str(out_dir)], capsys)
    assert rc == 2 and out == ""
    assert err == f"error: {out_dir / CARD_FILE} is not a regular file: move it away, or give another --out-dir\n"
    assert (out_dir / MODEL_FILE).read_bytes() == b"the previous model"
    assert sorted(p.name for p in out_dir.iterdir()) == [CARD_FILE, MODEL_FILE]
