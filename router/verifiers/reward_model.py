"""``reward_model``: an outcome reward model learned from this project's own labelled samples.

P(correct) from cheap features of the question, the candidate and the sampling statistics
(see :data:`FEATURES`), by a scikit-learn logistic regression exported to ONNX
(``scripts/train_reward_model.py`` makes the data, trains, exports and writes the card). The
ONNX file is loaded only after its sha256 matches ``reward_model.json``; nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from router.engine import Engine, FinishReason
from router.engine.manifest import sha256_file
from router.errors import ModelIntegrityError, ModelNotBuiltError
from router.verifiers.base import ScoredItem, Verifier

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TRAIN_COMMAND = "python scripts/train_reward_model.py"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

ALL_FEATURES = (
    "mean_logprob",  # self-likelihood
    "min_logprob",  # the least likely token
    "log_tokens",  # log(1 + completion tokens)
    "ended",  # finished with EOS (not cut at the length limit)
    "answered",  # a final answer could be extracted
    "vote_share",  # share of all samples with this answer
    "distinct_share",  # distinct answers / samples: how spread the samples are
    "answer_in_question",  # the answer just repeats a number of the question (a common failure)
    "question_numbers",  # how many numbers the question has
    "log_answer_magnitude",  # log(1 + |answer|) when numeric
)
# The model uses all ten. On 9 families x 2 temperatures, leave-one-family-out (scripts/
# train_reward_model.py, card: feature_sets_compared), dropping the question-shape features or
# adding each sample's likelihood relative to its siblings did not pick better answers.
FEATURES = ALL_FEATURES


def features(item: ScoredItem) -> list[float]:
    """The model's input vector for one candidate."""
    return _vector(all_features(item))


def _vector(named: dict[str, float]) -> list[float]:
    """The model's input vector from a candidate's :func:`all_features`."""
    return [named[f] for f in FEATURES]


def all_features(item: ScoredItem) -> dict[str, float]:
    c = item.completion
    lps = c.logprobs or [0.0]
    q_numbers = _NUMBER.findall(item.question)
    try:
        magnitude = math.log1p(abs(float(item.answer)))
    except ValueError:
        magnitude = 0.0
    answered = bool(item.answer)
    values = (
        sum(lps) / len(lps),
        min(lps),
        math.log1p(c.completion_tokens),
        float(c.finish_reason is FinishReason.EOS),
        float(answered),
        item.votes.get(item.answer, 0) / item.total if answered and item.total else 0.0,
        len(item.votes) / item.total if item.total else 0.0,
        float(answered and item.answer in q_numbers),
        float(len(q_numbers)),
        magnitude,
    )
    return dict(zip(ALL_FEATURES, values, strict=True))


def committed_sha256(artifacts: Path = ARTIFACTS) -> str:
    """The sha256 its card gives the reward model: what labels and benchmarks record they used."""
    return json.loads((artifacts / "reward_model.json").read_text())["sha256"]


class RewardModel(Verifier):
    name = "reward_model"

    def __init__(self, artifacts: Path = ARTIFACTS) -> None:
        self.artifacts = artifacts
        self._session = None

    def _load(self):  # noqa: ANN202
        if self._session is None:
            import onnxruntime as ort

            card = self.artifacts / "reward_model.json"
            model = self.artifacts / "reward_model.onnx"
            if not card.is_file() or not model.is_file():
                raise ModelNotBuiltError(f"reward model missing in {self.artifacts}; train it with `{TRAIN_COMMAND}`")
            meta = json.loads(card.read_text())
            if sha256_file(model) != meta["sha256"]:
                raise ModelIntegrityError(
                    f"{model} does not match the sha256 in {card.name}; retrain with `{TRAIN_COMMAND}`"
                )
            if tuple(meta["features"]) != FEATURES:
                raise ModelIntegrityError(f"{card.name} was trained on other features; retrain with `{TRAIN_COMMAND}`")
            self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return self._session

    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        return self.score_features([all_features(i) for i in items])

    def score_features(self, named: Sequence[dict[str, float]]) -> list[float]:
        """Scores of candidates given by their :func:`all_features` (e.g. stored with a sample
        pool, so that a retrained model can rescore it without sampling again)."""
        if not named:
            return []
        session = self._load()
        x = np.array([_vector(n) for n in named], dtype=np.float32)
        probabilities = session.run(None, {session.get_inputs()[0].name: x})[1]
        return [float(p) for p in np.clip(probabilities[:, 1], 0.0, 1.0)]
