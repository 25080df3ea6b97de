"""The outcome reward model: loaded only from ONNX with a matching sha256; agrees with sklearn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from router.engine import Engine, SamplingParams
from router.errors import ModelIntegrityError, ModelNotBuiltError
from router.verifiers import ScoredItem, get_verifier
from router.verifiers.reward_model import ARTIFACTS, FEATURES, RewardModel, features


@pytest.fixture
def artifacts_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS, dst)
    return dst


def items(engine: Engine) -> list[ScoredItem]:
    comps = engine.generate("What is 7 + 5?", SamplingParams(temperature=1.0, max_new_tokens=8, seed=1), n=4)
    votes = {"12": 2, "7": 1}
    return [ScoredItem("What is 7 + 5?", c, a, votes, 4) for c, a in zip(comps, ["12", "12", "7", ""], strict=True)]


def test_scores_are_probabilities(tiny: Engine) -> None:
    scores = get_verifier("reward_model").score(items(tiny), tiny)
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)


def test_onnx_agrees_with_the_same_sklearn_fit(tiny: Engine) -> None:
    """Refit the committed recipe on the committed data; ONNX must match it within 1e-4."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = [json.loads(line) for line in (ARTIFACTS / "reward_data.jsonl").read_text().splitlines()]
    x = np.array([[r["features"][f] for f in FEATURES] for r in rows], dtype=np.float32)
    y = np.array([r["correct"] for r in rows])
    skl = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0)).fit(x, y)
    probe = [features(i) for i in items(tiny)]
    onnx_scores = get_verifier("reward_model").score(items(tiny), tiny)
    np.testing.assert_allclose(onnx_scores, skl.predict_proba(np.array(probe, dtype=np.float32))[:, 1], atol=1e-4)


def test_altered_onnx_is_refused(artifacts_copy: Path, tiny: Engine) -> None:
    model = artifacts_copy / "reward_model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        RewardModel(artifacts_copy).score(items(tiny), tiny)


def test_missing_onnx_names_the_training_command(artifacts_copy: Path, tiny: Engine) -> None:
    (artifacts_copy / "reward_model.onnx").unlink()
    with pytest.raises(ModelNotBuiltError, match="train_reward_model.py"):
        RewardModel(artifacts_copy).score(items(tiny), tiny)


def test_card_for_other_features_is_refused(artifacts_copy: Path, tiny: Engine) -> None:
    card = artifacts_copy / "reward_model.json"
    meta = json.loads(card.read_text())
    meta["features"] = list(FEATURES[:-1])
    card.write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="other features"):
        RewardModel(artifacts_copy).score(items(tiny), tiny)


def test_card_reports_held_out_family_metrics() -> None:
    meta = json.loads((ARTIFACTS / "reward_model.json").read_text())
    m = meta["metrics"]
    assert m["rows"] > 500
    assert m["auc_leave_one_family_out"] is not None and len(m["auc_per_held_out_family"]) >= 6
    assert all({"SC@8", "BoN@8 reward_model", "weighted@8 reward_model"} <= set(t)
               for t in m["selection_accuracy_leave_one_family_out"].values())
    assert (ARTIFACTS / "reward_model.onnx").stat().st_size < 2_000_000


def test_stored_features_score_as_the_candidates_did(tiny: Engine) -> None:
    """A sample pool keeps each candidate's features; rescoring them gives the live scores."""
    from router.verifiers.reward_model import all_features

    batch = items(tiny)
    live = get_verifier("reward_model").score(batch, tiny)
    stored = json.loads(json.dumps([all_features(i) for i in batch]))  # as written to and read from JSONL
    assert RewardModel().score_features(stored) == pytest.approx(live, abs=1e-7)
    assert RewardModel().score_features([]) == []
