"""Train the difficulty classifier, export it to ONNX, check it against scikit-learn, write its card.

    router difficulty train [--labels router/difficulty/data/labels.jsonl] [--out-dir router/difficulty/artifacts]
                            [--seed 0]

The model predicts, for each compute level of the labels, P(the level answers this query
correctly) from the query text alone:

1. :func:`router.difficulty.features.normalize` (lower case, single spaces), then one shared
   ``FeatureUnion`` of word 1-2-gram and character 1-4-gram TF-IDF (sublinear tf, l2 per block).
2. One ``LogisticRegression`` per level on those features.
3. Platt scaling per level, fitted on out-of-fold logits (stratified k-fold over the training
   questions, the vectoriser refitted in every fold): ``p = sigmoid(a * z + b)``. As
   ``z = w . x + c``, the calibrated model is again a logistic regression with ``w' = a * w`` and
   ``c' = a * c + b``: the scaling is folded into the weights, and serving pays nothing for it.
   ``a`` is kept >= 0: a level whose out-of-fold logits do not rank its outcomes is flattened to
   its base rate, never inverted. A level with one class only in training is the constant
   (clipped) base rate.

Export converts only the fitted ``FeatureUnion`` with skl2onnx and appends ``MatMul`` (features x
``W[n_features, n_levels]``) + ``Add`` + ``Sigmoid``: one ONNX Runtime session vectorises the text
once and returns ``success[N, n_levels]``. skl2onnx writes ``log(1 + tf)`` for ``sublinear_tf``
where scikit-learn computes ``1 + log(tf)`` (for tf > 0): :func:`export_onnx` rewrites those nodes
(:func:`_fix_sublinear_tf`; :func:`_use_lp_normalization` swaps in a faster op for the l2 norm),
and a parity check (max error against scikit-learn <= 1e-4 on every label question and on edge
texts, batched and one by one) guards the result before anything is written.

Training uses ``split == "train"`` only; metrics are reported on ``test`` (held-out questions of
the training families) and ``unseen`` (families never trained on). The shipped model is exactly
the evaluated one. Nothing is pickled: the ONNX file and a JSON card are the artifact, and the
card's sha256 is checked by :class:`router.difficulty.scorer.DifficultyScorer`. Both are written
in a temporary directory inside ``--out-dir`` and renamed into place only once everything was
written, the card after the model: a failed run leaves the previous model and card as they were.

Exit status 0, or 2 with ``error: ...`` when the labels cannot be read or hold nothing to train on,
or the output directory cannot be written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router.difficulty import LABELS
from router.difficulty.features import NORMALIZATION, ONNX_LOCALE, TOKEN_PATTERN, make_vectorizer, normalize
from router.difficulty.scorer import ARTIFACTS, CARD_FILE, MODEL_FILE, TRAIN_COMMAND, DifficultyScorer, open_session
from router.engine.manifest import sha256_file
from router.errors import RouterError
from router.policy.tuning import POLICY_ROW_PREFIX, rows_file_problem, scan_rows

if TYPE_CHECKING:
    import onnx
    from scipy.sparse import spmatrix

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parents[1]
README_FILE = "README.md"
LABEL_KEYS = ("id", "level", "correct", "question", "split", "family")
INPUT_NAME = "text"
OUTPUT_NAME = "success"
OPSET = 18  # the most skl2onnx may use; the model records what it does use
PARITY_TOLERANCE = 1e-4
ECE_BINS = 10
EVAL_SPLITS = ("test", "unseen")
EDGE_TEXTS = (
    "",
    " \n\t ",
    "?",
    "#",
    "What is 7 × 8? Ünïcödé ÉÀ — 你好 🙂",
    "Which is larger,\n\n 57   or\t50?",
    "What is 123456789 + 987654321? " * 400,
)


# ----------------------------------------------------------------------------------------- data


class TrainError(RouterError):
    """Training cannot run, or its artifacts cannot be written; the message says why."""


@dataclass(frozen=True)
class Labels:
    """Complete label rows, one entry per question that has a row for every level."""

    texts: list[str]
    y: np.ndarray  # [questions, levels] int8, 1 = the level answered correctly
    splits: np.ndarray  # [questions] "train" | "test" | "unseen"
    families: np.ndarray  # [questions]
    levels: tuple[str, ...]  # column order of ``y``, in the order levels first appear in the file
    ids: tuple[str, ...]
    incomplete: int = 0  # questions left out because some level has no row yet
    skipped: tuple[tuple[int, str], ...] = ()  # (line number, why) of lines that are not label rows
    policy_rows: int = 0  # rows of a policy's own choice (level policy:NAME), not a level: left out

    def select(self, split: str) -> np.ndarray:
        """Boolean mask of the questions in ``split``."""
        return self.splits == split


def load_labels(path: Path) -> Labels:
    """Read ``LevelResult`` rows (``router/evaluation/runner.py``); keep questions with every level.

    A line that is not a label row is skipped and listed in ``skipped``: a torn last line (a
    labelling run still writing, or killed), a line that is not UTF-8 or not JSON, a row without
    ``id``, ``level``, ``correct``, ``question``, ``split`` and ``family`` or with a value of the wrong
    type (:func:`router.policy.tuning.row_problem`; ``correct`` must be a JSON boolean). Rows of a
    policy's own choice (level ``policy:NAME``, from ``router eval --route``) are not a level: they
    are counted in ``policy_rows`` and left out. A repeated (question, level) row after its first is
    ignored. :class:`TrainError` when the file cannot be read or has no label row.
    """
    path = Path(path)
    if problem := rows_file_problem(path):
        raise TrainError(f"labels file {path} {problem}")
    questions: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, dict[str, bool]] = {}
    levels: list[str] = []
    policy_rows = 0
    try:
        found, skipped = scan_rows(path, LABEL_KEYS)
    except OSError as exc:
        raise TrainError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    for _, row in found:
        qid, level = row["id"], row["level"]
        if level.startswith(POLICY_ROW_PREFIX):
            policy_rows += 1
            continue
        questions.setdefault(qid, {k: row[k] for k in ("question", "split", "family")})
        outcomes.setdefault(qid, {}).setdefault(level, row["correct"])
        if level not in levels:
            levels.append(level)
    if not levels:
        why = []
        if policy_rows:
            why.append(f"its {policy_rows} row(s) are of a policy's own choice (level {POLICY_ROW_PREFIX}NAME, from "
                       "`router eval --route`), not of a forced level")
        if skipped:
            why.append(f"{len(skipped)} line(s) are not label rows, e.g. {path}:{skipped[0][0]}: {skipped[0][1]}")
        raise TrainError(f"no label rows in {path}: " + ("; ".join(why) or "the file is empty"))
    complete = [qid for qid in questions if len(outcomes[qid]) == len(levels)]
    return Labels(
        texts=[questions[q]["question"] for q in complete],
        y=np.array([[outcomes[q][lv] for lv in levels] for q in complete], dtype=np.int8).reshape(-1, len(levels)),
        splits=np.array([questions[q]["split"] for q in complete], dtype=object),
        families=np.array([questions[q]["family"] for q in complete], dtype=object),
        levels=tuple(levels),
        ids=tuple(complete),
        incomplete=len(questions) - len(complete),
        skipped=tuple(skipped),
        policy_rows=policy_rows,
    )


# ---------------------------------------------------------------------------------------- model


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid ``P(y=1 | z) = sigmoid(a * z + b)`` by maximum likelihood, with ``a >= 0``.

    Uses Platt's smoothed targets ((N+ + 1) / (N+ + 2) and 1 / (N- + 2)), which keep ``a`` finite
    when the logits separate the classes perfectly.
    """
    from scipy.optimize import minimize

    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        s = ab[0] * z + ab[1]
        g = sigmoid(s) - t
        return float(np.sum(np.logaddexp(0.0, s) - t * s)), np.array([np.dot(g, z), g.sum()])

    start = np.array([0.0, np.log((n_pos + 1.0) / (n_neg + 1.0))])
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)],
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    return float(res.x[0]), float(res.x[1])


class DifficultyModel:
    """Shared TF-IDF features, one calibrated logistic regression per level (scikit-learn style).

    After :meth:`fit`: ``union_`` (the fitted ``FeatureUnion``), ``coef_`` ``[levels, features]`` and
    ``intercept_`` ``[levels]`` of the calibrated (folded) model, ``raw_coef_``/``raw_intercept_``
    before calibration, ``platt_`` ``[levels, 2]`` (a, b), ``calibration_`` (per level: ``platt``,
    ``none`` or ``constant``), ``folds_``, ``base_rate_``, ``levels_``.
    """

    def __init__(
        self,
        C: float = 1.0,  # noqa: N803  (scikit-learn's name)
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (1, 4),
        min_df: int = 2,
        cv_folds: int = 5,
        calibrate: bool = True,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.min_df = min_df
        self.cv_folds = cv_folds
        self.calibrate = calibrate
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"C": self.C, "word_ngrams": list(self.word_ngrams), "char_ngrams": list(self.char_ngrams),
                "min_df": self.min_df, "cv_folds": self.cv_folds, "calibrate": self.calibrate, "seed": self.seed}

    # -- fitting

    def _union(self):  # noqa: ANN202
        return make_vectorizer(tuple(self.word_ngrams), tuple(self.char_ngrams), self.min_df)

    def _fit_lr(self, x: spmatrix, y: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=self.C, solver="newton-cg", max_iter=1_000, tol=1e-6)
        lr.fit(x, y)
        return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])

    def _out_of_fold(self, docs: list[str], y: np.ndarray, folds: int) -> np.ndarray:
        from sklearn.model_selection import StratifiedKFold

        z = np.zeros(len(y))
        for tr, va in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(docs, y):
            union = self._union().fit([docs[i] for i in tr])
            w, c = self._fit_lr(union.transform([docs[i] for i in tr]), y[tr])
            z[va] = union.transform([docs[i] for i in va]) @ w + c
        return z

    def fit(self, texts: Sequence[str], y: np.ndarray, levels: Sequence[str] | None = None) -> DifficultyModel:
        y = np.asarray(y).astype(np.int64).reshape(len(texts), -1)
        docs = [normalize(t) for t in texts]
        self.levels_ = tuple(levels) if levels is not None else tuple(f"level{j}" for j in range(y.shape[1]))
        if len(self.levels_) != y.shape[1]:
            raise ValueError(f"{len(self.levels_)} level names for {y.shape[1]} label columns")
        self.union_ = self._union().fit(docs)
        x = self.union_.transform(docs)
        n, n_features = x.shape
        self.n_features_ = {name: len(t.vocabulary_) for name, t in self.union_.transformer_list}
        self.raw_coef_ = np.zeros((y.shape[1], n_features))
        self.raw_intercept_ = np.zeros(y.shape[1])
        self.platt_ = np.tile([1.0, 0.0], (y.shape[1], 1))
        self.base_rate_ = y.mean(axis=0)
        self.calibration_: list[str] = []
        self.folds_: list[int] = []
        for j in range(y.shape[1]):
            yj = y[:, j]
            minority = int(min(yj.sum(), n - yj.sum()))
            if minority == 0:  # one class only: the base rate, kept off exact 0 and 1
                rate = float(np.clip(yj.mean(), 0.5 / n, 1 - 0.5 / n))
                self.raw_intercept_[j] = logit(rate)
                self.calibration_.append("constant")
                self.folds_.append(0)
                continue
            self.raw_coef_[j], self.raw_intercept_[j] = self._fit_lr(x, yj)
            folds = min(self.cv_folds, minority)
            if self.calibrate and folds >= 2:
                self.platt_[j] = platt(self._out_of_fold(docs, yj, folds), yj)
                self.calibration_.append("platt")
                self.folds_.append(folds)
            else:
                self.calibration_.append("none")
                self.folds_.append(0)
        a, b = self.platt_[:, :1], self.platt_[:, 1]
        self.coef_ = a * self.raw_coef_
        self.intercept_ = a[:, 0] * self.raw_intercept_ + b
        return self

    # -- prediction (scikit-learn side: the reference the ONNX graph must match)

    def transform(self, texts: Sequence[str]) -> spmatrix:
        """The shared features of ``texts`` (normalised here)."""
        return self.union_.transform([normalize(t) for t in texts])

    def raw_decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated logits ``[N, levels]``."""
        return np.asarray(self.transform(texts) @ self.raw_coef_.T) + self.raw_intercept_

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated logits ``[N, levels]``."""
        return np.asarray(self.transform(texts) @ self.coef_.T) + self.intercept_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(correct) per level, ``[N, levels]``."""
        return sigmoid(self.decision_function(texts))


def fit(texts: Sequence[str], y: np.ndarray, levels: Sequence[str], **params: Any) -> DifficultyModel:
    """A :class:`DifficultyModel` with ``params`` fitted on ``texts`` and the label matrix ``y``."""
    return DifficultyModel(**params).fit(texts, y, levels)


# --------------------------------------------------------------------------------------- export


def export_onnx(model: DifficultyModel) -> onnx.ModelProto:
    """The fitted model as one ONNX graph: ``text[N, 1]`` (normalised) -> ``success[N, levels]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    options = {id(t): {"locale": ONNX_LOCALE} for _, t in model.union_.transformer_list}
    onx = convert_sklearn(model.union_, name="difficulty", initial_types=[(INPUT_NAME, StringTensorType([None, 1]))],
                          options=options, target_opset=OPSET)
    graph = onx.graph
    _fix_sublinear_tf(graph, expected=len(model.union_.transformer_list))
    _use_lp_normalization(graph, expected=len(model.union_.transformer_list))
    features = graph.output[0].name
    n_levels = len(model.levels_)
    graph.initializer.extend([
        numpy_helper.from_array(model.coef_.T.astype(np.float32), "level_weights"),
        numpy_helper.from_array(model.intercept_.astype(np.float32), "level_bias"),
    ])
    graph.node.extend([
        helper.make_node("MatMul", [features, "level_weights"], ["level_logits_nobias"], name="LevelMatMul"),
        helper.make_node("Add", ["level_logits_nobias", "level_bias"], ["level_logits"], name="LevelBias"),
        helper.make_node("Sigmoid", ["level_logits"], [OUTPUT_NAME], name="LevelSigmoid"),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, n_levels]))
    # skl2onnx lists the opset domains in set order, which changes with PYTHONHASHSEED: sort them so
    # that the same labels give the same bytes.
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in imports)
    onx.doc_string = "P(correct) per compute level from the normalised query text; see difficulty.json"
    helper.set_model_props(onx, {"levels": json.dumps(list(model.levels_)), "normalization": NORMALIZATION})
    onnx.checker.check_model(onx, full_check=True)
    return onx


def _fix_sublinear_tf(graph: onnx.GraphProto, expected: int) -> None:
    """Make skl2onnx's ``log(tf + 1)`` into scikit-learn's ``1 + log(tf)`` for tf > 0 (0 stays 0).

    The converter emits ``TfIdfVectorizer(mode="TF") -> Add(tf, ones) -> Log``. Counts are whole
    numbers, so ``log(max(e * tf, 1))`` is ``1 + log(tf)`` where tf >= 1 and 0 where tf = 0: the
    vectoriser switches to mode ``TFIDF`` with every n-gram weight ``e`` (it then outputs weight x
    count) and the ``Add`` becomes ``Max``. No node is added: every node costs ~1 us per query.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    fixed = 0
    for log in [n for n in graph.node if n.op_type == "Log"]:
        add = producers.get(log.input[0])
        if add is None or add.op_type != "Add" or len(add.input) != 2 or add.input[1] not in inits:
            continue
        if not np.all(numpy_helper.to_array(inits[add.input[1]]) == 1):
            continue
        vectorizer = producers.get(add.input[0])
        if vectorizer is None or vectorizer.op_type != "TfIdfVectorizer":
            continue
        attrs = {a.name: a for a in vectorizer.attribute}
        if helper.get_attribute_value(attrs["mode"]) != b"TF":
            continue
        attrs["mode"].s = b"TFIDF"
        n_weights = len(attrs["weights"].floats)
        del attrs["weights"].floats[:]
        attrs["weights"].floats.extend([math.e] * n_weights)
        add.op_type = "Max"
        fixed += 1
    if fixed != expected:
        raise RuntimeError(f"expected {expected} sublinear-tf blocks in the skl2onnx graph, found {fixed}")


def _use_lp_normalization(graph: onnx.GraphProto, expected: int) -> None:
    """Swap ``ai.onnx.ml.Normalizer(norm="L2")`` for the standard ``LpNormalization(p=2)``: same values

    (a zero row stays zero), ~1 us less per block and query in ONNX Runtime.
    """
    from onnx import helper

    found = [n for n in graph.node if n.op_type == "Normalizer" and n.domain == "ai.onnx.ml"]
    if len(found) != expected or any(
        helper.get_attribute_value(a) != b"L2" for n in found for a in n.attribute if a.name == "norm"
    ):
        raise RuntimeError(f"expected {expected} L2 Normalizer nodes in the skl2onnx graph, found {len(found)}")
    for node in found:
        node.op_type, node.domain = "LpNormalization", ""
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("axis", -1), helper.make_attribute("p", 2)])


def onnx_session(model: onnx.ModelProto | bytes) -> Any:
    """A session opened as :class:`DifficultyScorer` opens one (CPU, one thread)."""
    return open_session(model if isinstance(model, bytes) else model.SerializeToString())


def onnx_predict(session: Any, texts: Sequence[str], batch: bool = True) -> np.ndarray:
    """``success`` for ``texts`` through an ONNX session, in one batch or one query at a time."""
    docs = [normalize(t) for t in texts]
    if batch:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.array(docs, dtype=object).reshape(-1, 1)})[0]
    return np.vstack([session.run([OUTPUT_NAME], {INPUT_NAME: np.array([[d]], dtype=object)})[0] for d in docs])


def parity(model: DifficultyModel, session: Any, texts: Sequence[str]) -> float:
    """Max |ONNX - scikit-learn| over ``texts``, batched and one by one."""
    want = model.predict_proba(texts)
    return float(max(np.abs(onnx_predict(session, texts, batch) - want).max() for batch in (True, False)))


# -------------------------------------------------------------------------------------- metrics


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |predicted - observed| over ``bins`` equal-width probability bins, weighted by count."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return total / len(p)


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(np.asarray(y).tolist())) > 1 else None


def level_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC (None with one class), ECE, Brier, base rate and mean prediction of one level on one split."""
    def r(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    return {
        "n": len(y),
        "base_rate": r(np.mean(y)),
        "mean_prediction": r(np.mean(p)),
        "auc": r(auc(p, y)),
        "ece": r(expected_calibration_error(p, y)),
        "brier": r(np.mean((p - y) ** 2)),
    }


def evaluate(model: DifficultyModel, labels: Labels, train: str = "train") -> dict[str, dict[str, Any]]:
    """Per split and level: :func:`level_metrics`; on seen-family splits also the AUC of a family prior

    (each question scored by its family's training success rate: how much of the AUC is only
    telling families apart).
    """
    tr = labels.select(train)
    prior = {
        (f, j): float(labels.y[tr & (labels.families == f), j].mean())
        for f in set(labels.families[tr]) for j in range(len(labels.levels))
    }
    out: dict[str, dict[str, Any]] = {}
    for split in EVAL_SPLITS:
        m = labels.select(split)
        if not m.any():
            continue
        p = model.predict_proba([t for t, keep in zip(labels.texts, m, strict=True) if keep])
        out[split] = {}
        for j, level in enumerate(labels.levels):
            out[split][level] = level_metrics(p[:, j], labels.y[m, j])
            fams = labels.families[m]
            if all((f, j) in prior for f in fams):
                family_prior = np.array([prior[(f, j)] for f in fams])
                out[split][level]["auc_family_prior"] = (
                    None if (a := auc(family_prior, labels.y[m, j])) is None else round(a, 4))
    return out


def measure_latency(scorer: Any, texts: Sequence[str], rounds: int = 20, warmup: int = 200) -> dict[str, Any]:
    """Single-query ``scorer.predict`` wall time over ``texts`` x ``rounds``, in microseconds."""
    texts = list(texts)
    for i in range(warmup):
        scorer.predict(texts[i % len(texts)])
    times = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for t in texts:
            start = clock()
            scorer.predict(t)
            times.append(clock() - start)
    us = np.array(times) / 1000.0
    lengths = [len(t) for t in texts]
    return {"p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1),
            "calls": len(us), "texts": len(texts), "text_chars_median": int(np.median(lengths)),
            "text_chars_max": int(max(lengths))}


# ----------------------------------------------------------------------------------------- card


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import scipy
    import skl2onnx
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def data_summary(labels: Labels, path: Path) -> dict[str, Any]:
    train_texts = {normalize(t) for t, s in zip(labels.texts, labels.splits, strict=True) if s == "train"}
    splits = sorted(set(labels.splits))
    meta_path = Path(path).with_suffix(".meta.json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        made_with = {k: meta[k] for k in ("model", "seed", "per_family", "per_task", "policy_version") if k in meta}
    except (OSError, json.JSONDecodeError):
        made_with = {}
    return {
        "file": _relative(path),
        "sha256": sha256_file(Path(path)),
        "made_with": made_with,  # from the labelling run's .meta.json, when there is one
        "levels": list(labels.levels),
        "questions": {s: int((labels.splits == s).sum()) for s in splits},
        "questions_incomplete_left_out": labels.incomplete,
        "lines_skipped": len(labels.skipped),  # not label rows: torn, foreign or with a bad value
        "policy_rows_left_out": labels.policy_rows,
        "families": {s: dict(sorted(Counter(labels.families[labels.splits == s]).items())) for s in splits},
        "success_rate": {s: {lv: round(float(labels.y[labels.splits == s, j].mean()), 4)
                             for j, lv in enumerate(labels.levels)} for s in splits},
        "eval_texts_also_in_train": {s: sum(normalize(t) in train_texts for t, sp in
                                            zip(labels.texts, labels.splits, strict=True) if sp == s)
                                     for s in EVAL_SPLITS},
    }


def _describe_run(made_with: dict[str, Any]) -> str:
    keys = ("seed", "per_family", "per_task", "policy_version")
    return ", ".join(f"{k} {made_with[k]}" for k in keys if k in made_with) or "settings not recorded"


def _auc_summary(metrics: dict[str, dict[str, Any]]) -> str:
    def span(values: list[float]) -> str:
        return "—" if not values else f"{min(values):.2f}–{max(values):.2f}"

    out = []
    if "test" in metrics:
        test = metrics["test"].values()
        out.append(f"On held-out questions of the training families the AUC per level is "
                   f"{span([x['auc'] for x in test if x['auc'] is not None])}, against "
                   f"{span([x['auc_family_prior'] for x in test if x.get('auc_family_prior') is not None])} "
                   "for the family prior: much of the signal is which family a question belongs to.")
    if "unseen" in metrics:
        out.append(f"On families never seen in training it is "
                   f"{span([x['auc'] for x in metrics['unseen'].values() if x['auc'] is not None])} (0.5 = chance).")
    return " ".join(out)


def write_readme(card: dict[str, Any], path: Path) -> None:
    """The human model card, written from the JSON card."""
    d, m, lat = card["data"], card["metrics"], card["latency"]
    levels = card["output"]["levels"]
    lines = [
        "# Difficulty classifier — model card",
        "",
        f"*Generated by `{TRAIN_COMMAND}` from `{CARD_FILE}` on {card['trained_at']}; do not edit by hand.*",
        "",
        f"**What it is.** `{MODEL_FILE}` ({card['size_bytes']:,} bytes, sha256 `{card['sha256'][:12]}…`): for a "
        f"query text, P(correct answer) at each compute level ({', '.join(f'`{lv}`' for lv in levels)}), "
        "served by ONNX Runtime through `router.difficulty.scorer.DifficultyScorer`, which refuses the file "
        "unless its sha256 matches the card. No pickle anywhere.",
        "",
        f"**Model.** {card['model']['description']} Hyperparameters: `{json.dumps(card['model']['hyperparameters'])}`;"
        f" features: {card['model']['n_features']}.",
        "",
        f"**Data.** `{d['file']}` (sha256 `{d['sha256'][:12]}…`): each question answered at every level by "
        f"{d['made_with'].get('model', 'the default model')} through the real strategies "
        f"(`router difficulty labels`, {_describe_run(d['made_with'])}), graded strictly. "
        f"Questions per split: {d['questions']}; {d['questions_incomplete_left_out']} incomplete question(s) "
        "left out. Training uses `train` only; `test` holds out questions of the training families, "
        "`unseen` whole families never trained on.",
        "",
        "| split | families (questions) |",
        "|---|---|",
    ]
    for s, fams in d["families"].items():
        lines.append(f"| {s} | {', '.join(f'{f} ({n})' for f, n in fams.items())} |")
    lines += [
        "",
        "**Evaluation** (`metrics` in the card; ECE with 10 equal-width bins; *family prior* = each question "
        "scored by its family's training success rate):",
        "",
        "| split | level | n | success rate | mean prediction | AUC | AUC family prior | ECE | Brier |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any) -> str:
        return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for split, per_level in m.items():
        for lv, x in per_level.items():
            lines.append(f"| {split} | {lv} | {x['n']} | {f(x['base_rate'])} | {f(x['mean_prediction'])} | "
                         f"{f(x['auc'])} | {f(x.get('auc_family_prior'))} | {f(x['ece'])} | {f(x['brier'])} |")
    lines += [
        "",
        f"**Parity.** ONNX Runtime against scikit-learn on {card['parity']['texts']} texts (every label question "
        f"and edge texts: empty, whitespace, non-ASCII, {max(len(t) for t in EDGE_TEXTS):,} characters), batched and "
        f"one at a time: max |difference| = {card['parity']['max_abs_error']:.2e} (tolerance "
        f"{card['parity']['tolerance']:g}).",
        "",
        f"**Latency.** One query through `DifficultyScorer.predict` (1 intra-op thread, CPU provider): "
        f"p50 {lat['p50_us']} µs, p99 {lat['p99_us']} µs over {lat['calls']:,} calls on the {lat['texts']} label "
        f"questions (median {lat['text_chars_median']} characters). scikit-learn `predict_proba` on the same "
        f"queries: p50 {lat['sklearn_p50_us']} µs. Machine: {lat['machine']}, 1-minute load average "
        f"{lat['load_average_1min']} while measuring (other work on the box moves these numbers).",
        "",
        f"**Limits.** {_auc_summary(m)} The labels are small (one run of the model per question and level) and "
        "come from a few synthetic task families; the `unseen` rows are the honest estimate for new kinds of "
        "queries. The classifier knows only the text: it cannot see a request's budget or the model's state.",
        "",
        f"**Retrain.** `{TRAIN_COMMAND}` (seconds; deterministic given the labels: with the library versions in "
        "the card, the same labels give a byte-identical ONNX file).",
        "",
    ]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------------------- main


def train(labels_path: Path = LABELS, out_dir: Path = ARTIFACTS, seed: int = 0, **params: Any) -> dict[str, Any]:
    """Fit on the train split, export, verify parity, measure latency; write ONNX, card and README.

    The three files are written in a temporary directory inside ``out_dir`` (latency is measured
    there, through the serving path) and renamed into place only when all of them were written,
    the card after the model it describes. :class:`TrainError` for labels with nothing to train on
    or an ``out_dir`` that cannot be written; then ``out_dir`` is left as it was.
    """
    check_out_dir(out_dir)
    labels = load_labels(labels_path)
    report_left_out(labels, labels_path)
    tr = labels.select("train")
    if not tr.any():
        raise TrainError(f"no complete training questions in {labels_path} (split 'train', with a row for every "
                         f"level: {', '.join(labels.levels)})")
    train_texts = [t for t, keep in zip(labels.texts, tr, strict=True) if keep]
    model = fit(train_texts, labels.y[tr], labels.levels, seed=seed, **params)

    onx = export_onnx(model)
    probe = list(labels.texts) + list(EDGE_TEXTS)
    max_err = parity(model, onnx_session(onx), probe)
    if not max_err <= PARITY_TOLERANCE:
        raise SystemExit(f"ONNX differs from scikit-learn by {max_err:.2e} (> {PARITY_TOLERANCE}); nothing written")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".train-", dir=out_dir))
    except OSError as exc:
        raise TrainError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    try:
        card = _write_artifacts(staging, model, onx, labels, labels_path, max_err, len(probe))
        check_out_dir(out_dir)  # again: it may have changed while training
        for name in (MODEL_FILE, CARD_FILE, README_FILE):  # the card after the model it describes
            os.replace(staging / name, out_dir / name)
    except OSError as exc:
        raise TrainError(f"cannot write the classifier to {out_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def _write_artifacts(staging: Path, model: DifficultyModel, onx: onnx.ModelProto, labels: Labels, labels_path: Path,
                     max_err: float, probed: int) -> dict[str, Any]:
    """ONNX file, card and README in ``staging``; the latency is measured on the files there."""
    onnx_path = staging / MODEL_FILE
    onnx_path.write_bytes(onx.SerializeToString())

    card: dict[str, Any] = {
        "name": "difficulty",
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_command": TRAIN_COMMAND,
        "input": {"name": INPUT_NAME, "shape": [None, 1], "normalization": NORMALIZATION},
        "output": {"name": OUTPUT_NAME, "shape": [None, len(labels.levels)], "levels": list(labels.levels)},
        "model": {
            "description": (
                "normalize (lower case, single spaces) -> FeatureUnion(word 1-2-gram TF-IDF with token pattern "
                f"{TOKEN_PATTERN!r}, char n-gram TF-IDF; sublinear tf, l2 per block) -> one LogisticRegression per "
                "level, Platt-scaled on out-of-fold logits (stratified k-fold, vectoriser refitted per fold), the "
                "scaling folded into the weights. Trained on split 'train' only."
            ),
            "hyperparameters": model.get_params(),
            "n_features": model.n_features_,
            "calibration": {
                lv: {"method": model.calibration_[j], "folds": model.folds_[j],
                     "a": round(float(model.platt_[j, 0]), 6), "b": round(float(model.platt_[j, 1]), 6),
                     "train_base_rate": round(float(model.base_rate_[j]), 4)}
                for j, lv in enumerate(model.levels_)
            },
            "opsets": {o.domain or "ai.onnx": o.version for o in onx.opset_import},
        },
        "data": data_summary(labels, labels_path),
        "metrics": evaluate(model, labels),
        "parity": {"max_abs_error": float(f"{max_err:.3g}"), "texts": probed, "tolerance": PARITY_TOLERANCE},
        "latency": {},
        "versions": _versions(),
    }
    card_path = staging / CARD_FILE
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    scorer = DifficultyScorer(staging)  # the serving path, sha256 check included
    latency = measure_latency(scorer, labels.texts)
    sk = []
    for t in labels.texts[:50]:
        start = time.perf_counter_ns()
        model.predict_proba([t])
        sk.append(time.perf_counter_ns() - start)
    latency["sklearn_p50_us"] = round(float(np.median(sk)) / 1000.0, 1)
    latency["machine"] = f"{platform.machine()}, {_cpu_count()} CPUs, {platform.system()}"
    latency["load_average_1min"] = round(_load_average(), 2)  # other work on the box slows the numbers
    card["latency"] = latency
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_readme(card, staging / README_FILE)
    return card


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output directory the artifacts cannot be written to: not a directory, not writable,
    or one of the artifact names taken by something that is not a file (a rename onto a directory
    fails, and would fail after the model was already replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"--out-dir {out_dir} is not a directory")
    for name in (MODEL_FILE, CARD_FILE, README_FILE):
        if (out_dir / name).exists() and not (out_dir / name).is_file():
            raise TrainError(f"{out_dir / name} is not a regular file: move it away, or give another --out-dir")
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"--out-dir {out_dir}: {existing} is not a writable directory")


def report_left_out(labels: Labels, path: Path, shown: int = 3) -> None:
    """Say on stderr which lines of the labels were not label rows, and how many rows were a policy's."""
    if labels.skipped:
        lines = "; ".join(f"{path}:{n}: {why}" for n, why in labels.skipped[:shown])
        more = f"; {len(labels.skipped) - shown} more" if len(labels.skipped) > shown else ""
        print(f"{TRAIN_COMMAND}: skipped {len(labels.skipped)} line(s) that are not label rows: {lines}{more}",
              file=sys.stderr)
    if labels.policy_rows:
        print(f"{TRAIN_COMMAND}: left out {labels.policy_rows} row(s) of a policy's own choice (level "
              f"{POLICY_ROW_PREFIX}NAME): they are not a level to predict", file=sys.stderr)


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=TRAIN_COMMAND, description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS, help="LevelResult JSONL (default: %(default)s)")
    ap.add_argument("--out-dir", type=Path, default=ARTIFACTS, help="where the ONNX file, card and README go")
    ap.add_argument("--seed", type=int, default=0, help="cross-validation shuffling for calibration")
    args = ap.parse_args(argv)
    try:
        card = train(args.labels, args.out_dir, args.seed)
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {split: {lv: {k: x[k] for k in ("n", "auc", "ece", "brier")} for lv, x in per.items()}
               for split, per in card["metrics"].items()}
    print(json.dumps({"sha256": card["sha256"], "size_bytes": card["size_bytes"], "metrics": summary,
                      "parity_max_abs_error": card["parity"]["max_abs_error"], "latency": card["latency"]}, indent=2))
    print(f"wrote {_relative(args.out_dir / MODEL_FILE)}, {CARD_FILE}, {README_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
