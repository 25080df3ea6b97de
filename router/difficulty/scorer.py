"""``scorer``: P(correct) per compute level for a query, from the committed ONNX classifier.

The ONNX file is opened only after its sha256 matches the model card (``difficulty.json``);
nothing is unpickled. ``router difficulty train`` (:mod:`router.difficulty.train`) makes both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.difficulty.features import NORMALIZATION, normalize
from router.engine.manifest import sha256_file
from router.errors import ModelIntegrityError, ModelNotBuiltError

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TRAIN_COMMAND = "router difficulty train"
MODEL_FILE = "difficulty.onnx"
CARD_FILE = "difficulty.json"


def open_session(model: str | bytes) -> Any:
    """An ONNX Runtime session as the scorer runs it: CPU provider, one thread, sequential.

    ``model`` is a file path or the serialized model. One thread: a query is tens of microseconds,
    far below what splitting it across threads could win back, and the server runs many at once.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class DifficultyScorer:
    """The ``scorer`` extension point: text -> P(correct) for each compute level.

    This is what the policy consults (``router/core.py`` step 3). Another scorer (a different
    classifier, a lookup table, a remote model) only needs the same surface: :attr:`levels`,
    :attr:`version`, :meth:`predict` and :meth:`predict_many`. This one is a TF-IDF + calibrated
    logistic-regression graph in ONNX Runtime, one intra-op thread on the CPU provider: one query
    costs tens of microseconds, so it runs inline on the request path.

    Thread-safe: ONNX Runtime sessions may be run concurrently, and the reusable ``[1, 1]`` input
    array is per thread.
    """

    def __init__(self, artifacts: Path = ARTIFACTS) -> None:
        self.artifacts = Path(artifacts)
        model, card_path = self.artifacts / MODEL_FILE, self.artifacts / CARD_FILE
        if not model.is_file() or not card_path.is_file():
            raise ModelNotBuiltError(
                f"difficulty classifier missing in {self.artifacts} (needs {MODEL_FILE} and {CARD_FILE}); "
                f"train it with `{TRAIN_COMMAND}`"
            )
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            sha256, levels = card["sha256"], tuple(card["output"]["levels"])
            input_name, output_name = card["input"]["name"], card["output"]["name"]
            normalization = card["input"]["normalization"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelIntegrityError(
                f"{card_path} is not a valid model card ({exc}); retrain with `{TRAIN_COMMAND}`"
            ) from exc
        if sha256_file(model) != sha256:
            raise ModelIntegrityError(
                f"{model} does not match the sha256 in {CARD_FILE}; retrain with `{TRAIN_COMMAND}`"
            )
        if normalization != NORMALIZATION:
            raise ModelIntegrityError(
                f"{CARD_FILE} was trained on text normalised as {normalization!r}, this code does {NORMALIZATION!r}; "
                f"retrain with `{TRAIN_COMMAND}`"
            )
        self._session = open_session(str(model))
        outputs = self._session.get_outputs()
        if [o.name for o in outputs] != [output_name] or outputs[0].shape[-1] != len(levels):
            raise ModelIntegrityError(f"{model} does not have the output its card describes; retrain with "
                                      f"`{TRAIN_COMMAND}`")
        self.card: dict[str, Any] = card
        self._levels = levels
        self._sha256 = sha256
        self._input = input_name
        self._outputs = [output_name]
        self._run = self._session.run
        self._local = threading.local()

    @property
    def levels(self) -> tuple[str, ...]:
        """Level names, in the order of :meth:`predict_many`'s columns."""
        return self._levels

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The card's training hyperparameters as ``DifficultyModel`` takes them (JSON lists as tuples)."""
        params = self.card.get("model", {}).get("hyperparameters", {})
        return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}

    @property
    def version(self) -> str:
        """A short id of the model file (its sha256 prefix), for decision records."""
        return self._sha256[:12]

    def predict(self, text: str) -> dict[str, float]:
        """Level -> P(a correct answer at that level) for one query."""
        try:
            x = self._local.x
        except AttributeError:
            x = self._local.x = np.empty((1, 1), dtype=object)
        x[0, 0] = normalize(text)
        return dict(zip(self._levels, self._run(self._outputs, {self._input: x})[0][0].tolist(), strict=True))

    def predict_many(self, texts: Sequence[str]) -> np.ndarray:
        """P(correct) as a ``[len(texts), len(levels)]`` float32 array."""
        if len(texts) == 0:
            return np.zeros((0, len(self._levels)), dtype=np.float32)
        x = np.array([normalize(t) for t in texts], dtype=object).reshape(-1, 1)
        return self._run(self._outputs, {self._input: x})[0]
