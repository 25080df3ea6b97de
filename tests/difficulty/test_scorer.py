"""The scorer: the ONNX classifier behind a sha256 check; `router difficulty train` makes what it loads."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from router.difficulty.scorer import ARTIFACTS, CARD_FILE, MODEL_FILE, DifficultyScorer
from router.difficulty.train import LABELS, PARITY_TOLERANCE, DifficultyModel, Labels, fit, load_labels, main
from router.engine.manifest import sha256_file
from router.errors import ModelIntegrityError, ModelNotBuiltError

PACKAGE = Path(__file__).resolve().parents[2] / "router" / "difficulty"


@pytest.fixture(scope="session")
def trained(synthetic_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    assert main(["--labels", str(synthetic_path), "--out-dir", str(out)]) == 0
    return out


@pytest.fixture
def trained_copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "artifacts"))


def test_train_command_writes_model_card_and_readme(trained: Path, synthetic_path: Path) -> None:
    assert sorted(p.name for p in trained.iterdir()) == ["README.md", CARD_FILE, MODEL_FILE]
    card = json.loads((trained / CARD_FILE).read_text())
    assert card["sha256"] == sha256_file(trained / MODEL_FILE)
    assert card["data"]["sha256"] == sha256_file(synthetic_path)
    assert card["data"]["families"]["unseen"] == {"successor": 40}
    assert card["parity"]["max_abs_error"] <= PARITY_TOLERANCE
    assert set(card["metrics"]) == {"test", "unseen"}
    for split in card["metrics"].values():
        assert list(split) == card["output"]["levels"]
        for m in split.values():
            assert {"n", "auc", "ece", "brier", "base_rate"} <= set(m) and 0 <= m["ece"] <= 1
    assert 0 < card["latency"]["p50_us"] <= card["latency"]["p99_us"]
    readme = (trained / "README.md").read_text()
    assert card["sha256"][:12] in readme and "| unseen | best_of_n_rm |" in readme


def test_scorer_gives_one_probability_per_level(trained: Path, synthetic: Labels,
                                                synthetic_model: DifficultyModel) -> None:
    scorer = DifficultyScorer(trained)
    assert scorer.levels == synthetic.levels
    assert scorer.version == json.loads((trained / CARD_FILE).read_text())["sha256"][:12]
    one = scorer.predict("What is 12 * 8?")
    assert list(one) == list(scorer.levels) and all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in one.values())
    many = scorer.predict_many(synthetic.texts)
    assert many.shape == (len(synthetic.texts), 3) and scorer.predict_many([]).shape == (0, 3)
    np.testing.assert_allclose(list(scorer.predict(synthetic.texts[7]).values()), many[7], atol=1e-6)
    # the train command shipped exactly the model `fit` makes from the training split
    np.testing.assert_allclose(many, synthetic_model.predict_proba(synthetic.texts), atol=PARITY_TOLERANCE)


def test_scorer_is_safe_across_threads(trained: Path, synthetic: Labels) -> None:
    scorer = DifficultyScorer(trained)
    texts = synthetic.texts * 3
    with ThreadPoolExecutor(4) as pool:
        got = np.array(list(pool.map(lambda t: list(scorer.predict(t).values()), texts)))
    np.testing.assert_allclose(got, scorer.predict_many(texts), atol=1e-6)


def test_altered_model_is_refused(trained_copy: Path) -> None:
    model = trained_copy / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelIntegrityError, match=r"sha256.*router difficulty train"):
        DifficultyScorer(trained_copy)


def test_missing_model_names_the_train_command(trained_copy: Path) -> None:
    (trained_copy / MODEL_FILE).unlink()
    with pytest.raises(ModelNotBuiltError, match="router difficulty train"):
        DifficultyScorer(trained_copy)


def test_card_of_another_normalisation_is_refused(trained_copy: Path) -> None:
    path = trained_copy / CARD_FILE
    card = json.loads(path.read_text())
    card["input"]["normalization"] = "raw"
    path.write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="normalised"):
        DifficultyScorer(trained_copy)


def test_nothing_is_pickled() -> None:
    banned = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|joblib|cloudpickle|dill)\b", re.M)
    assert [p.name for p in PACKAGE.rglob("*.py") if banned.search(p.read_text())] == []
    assert [p.name for p in PACKAGE.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib", ".npy", ".npz")] == []


def test_committed_artifact_is_intact_and_small() -> None:
    scorer = DifficultyScorer()  # checks the sha256 against the card
    card = scorer.card
    assert (ARTIFACTS / MODEL_FILE).stat().st_size < 2 * 1024 * 1024
    assert card["parity"]["max_abs_error"] <= PARITY_TOLERANCE
    assert scorer.levels == tuple(card["data"]["levels"])
    assert set(card["metrics"]) == {"test", "unseen"}
    assert card["sha256"][:12] in (ARTIFACTS / "README.md").read_text()


def test_committed_artifact_matches_a_fresh_fit_of_the_committed_labels() -> None:
    scorer = DifficultyScorer()
    card = scorer.card
    if sha256_file(LABELS) != card["data"]["sha256"]:
        pytest.fail(f"{LABELS.name} changed since the committed classifier was trained; run `router difficulty train`")
    labels = load_labels(LABELS)
    train = labels.select("train")
    params = card["model"]["hyperparameters"]
    params = params | {"word_ngrams": tuple(params["word_ngrams"]), "char_ngrams": tuple(params["char_ngrams"])}
    model = fit([t for t, keep in zip(labels.texts, train, strict=True) if keep], labels.y[train], labels.levels,
                **params)
    np.testing.assert_allclose(scorer.predict_many(labels.texts), model.predict_proba(labels.texts),
                               atol=PARITY_TOLERANCE)
