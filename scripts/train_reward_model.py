"""Make the reward model's data, train it, export it to ONNX and write its card.

    python scripts/train_reward_model.py --generate   # sample SmolLM2 on the training questions (~13 min)
    python scripts/train_reward_model.py              # train + export from the committed data

Data: for 25 questions (seed 0; the benchmarks draw seed 1) of every generated family and every
reasoning-gym task in router/evaluation/datasets.py, the default model draws 8 samples from one
prefill at each of T=0.3 (the ladder's temperature) and T=0.7, 64 new tokens; every sample becomes
one row: its features (router/verifiers/reward_model.py) and whether its extracted answer is right.
Evaluation is leave-one-family-out: every row is scored by a model fit on the other families, so
each figure says how the model does on a kind of question it never saw. Besides AUC it reports
what the model is for: how often its pick among a question's 8 samples (top score, or weighted
votes) is right, next to the plain majority vote.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.verifiers.reward_model import ALL_FEATURES, ARTIFACTS, FEATURES, all_features  # noqa: E402

DATA = ARTIFACTS / "reward_data.jsonl"
PER_FAMILY = 25
SAMPLES = 8
QUESTION_SHAPE = ("answer_in_question", "question_numbers", "log_answer_magnitude")
TEMPERATURES = (0.3, 0.7)  # the ladder samples at 0.3 (router/policy/ladder.py); 0.7 for breadth
MAX_NEW_TOKENS = 64


def training_questions() -> list:
    """Seed 0 of every generated family and reasoning-gym task (benchmarks draw seed 1)."""
    from router.evaluation.datasets import FAMILIES, REASONING_GYM, generated, reasoning_gym

    qs = [q for family in FAMILIES for q in generated(family, PER_FAMILY, seed=0)]
    return qs + [q for name in REASONING_GYM for q in reasoning_gym(name, PER_FAMILY, seed=0)]


def generate() -> None:
    from router.config import Settings
    from router.domain import Candidate
    from router.engine import Engine, SamplingParams
    from router.strategies.sampling import tally
    from router.verifiers import ScoredItem

    engine = Engine.load(Settings().model_dir())
    rows, start, questions = [], time.time(), training_questions()
    for t in TEMPERATURES:
        for i, q in enumerate(questions):
            params = SamplingParams(temperature=t, max_new_tokens=MAX_NEW_TOKENS, seed=0)
            comps = engine.generate(q.text, params, n=SAMPLES)
            graded = [q.grade(c.text) for c in comps]
            cands = [Candidate(c, answer=g[0]) for c, g in zip(comps, graded, strict=True)]
            votes = tally(cands)
            for cand, (_, correct) in zip(cands, graded, strict=True):
                item = ScoredItem(q.text, cand.completion, cand.answer, votes, len(cands))
                rows.append({"question_id": q.id, "family": q.family, "temperature": t, "answer": cand.answer,
                             "truth": q.answer, "correct": correct, "features": all_features(item)})
            if (i + 1) % PER_FAMILY == 0:
                print(f"T={t} {q.family}: done ({time.time() - start:.0f} s)", flush=True)
    DATA.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {DATA.relative_to(ROOT)}")


def train() -> None:
    import numpy as np

    from router.engine.manifest import sha256_file

    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    y = np.array([r["correct"] for r in rows], dtype=np.int64)
    fam = np.array([r["family"] for r in rows])
    families = sorted(set(fam))

    def matrix(names: tuple[str, ...]) -> np.ndarray:
        return np.array([[r["features"][f] for f in names] for r in rows], dtype=np.float32)

    fitted: dict[tuple[str, ...], np.ndarray] = {}  # the shipped set is also a compared one: fit once

    def lofo_scores(names: tuple[str, ...]) -> np.ndarray:
        """Each row scored by a model fit on the other families only."""
        if names not in fitted:
            x, out = matrix(names), np.zeros(len(rows))
            for f in families:
                out[fam == f] = _fit(x[fam != f], y[fam != f]).predict_proba(x[fam == f])[:, 1]
            fitted[names] = out
        return fitted[names]

    # Feature sets compared on held-out families (no family sees itself): AUC and, what the model
    # is for, the accuracy of its pick among each question's samples. FEATURES is set from this.
    candidates = {
        "all": ALL_FEATURES,
        "no question shape": tuple(f for f in ALL_FEATURES if f not in QUESTION_SHAPE),
        "v1 (answer_in_question kept)": tuple(f for f in ALL_FEATURES if f not in QUESTION_SHAPE[1:]),
        "agreement and likelihood only": ("mean_logprob", "min_logprob", "answered", "vote_share", "distinct_share"),
        "shipped": FEATURES,
    }
    compared = {}
    for name, names in candidates.items():
        lofo = lofo_scores(names)
        compared[name] = {"features": list(names), "auc": auc_of(lofo, y, np.ones(len(y), bool)),
                          "selection": selection_accuracy(rows, lofo)}
    scores = lofo_scores(FEATURES)
    vote = matrix(("vote_share",))[:, 0]
    per_family = {f: {"reward_model": auc_of(scores, y, fam == f), "vote_share": auc_of(vote, y, fam == f)}
                  for f in families}
    metrics = {
        "rows": int(len(y)), "positive_rate": round(float(y.mean()), 3),
        "auc_leave_one_family_out": auc_of(scores, y, np.ones(len(y), bool)),
        "auc_vote_share_alone": auc_of(vote, y, np.ones(len(y), bool)),
        "auc_per_held_out_family": per_family,
        "feature_sets_compared": compared,
        "selection_accuracy_leave_one_family_out": selection_accuracy(rows, scores),
    }
    x = matrix(FEATURES)
    final = _fit(x, y)
    onx = _to_onnx(final, x[:1])
    out = ARTIFACTS / "reward_model.onnx"
    out.write_bytes(onx.SerializeToString())
    card = {
        "name": "reward_model", "features": list(FEATURES), "sha256": sha256_file(out),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "data": DATA.name,
        "model": "StandardScaler + LogisticRegression(C=1.0), fit on all rows after evaluation",
        "evaluation": "leave one family out: every row is scored by a model fit on the other families",
        "metrics": metrics,
    }
    (ARTIFACTS / "reward_model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


def _fit(x, y):  # noqa: ANN001, ANN202
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0)).fit(x, y)


def _to_onnx(model, x1):  # noqa: ANN001, ANN202
    from skl2onnx import to_onnx

    return to_onnx(model, x1, options={id(model.steps[-1][1]): {"zipmap": False}}, target_opset=18)


def selection_accuracy(rows: list[dict], scores) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Per temperature: how often the answer picked from each question's 8 samples is right, by
    majority vote (SC@8), the top reward-model score (BoN@8) and reward-weighted votes, with the
    held-out-family scores: what bench/strategies.py measures, on the training questions."""
    from types import SimpleNamespace

    from router.strategies.best_of_n import select
    from router.strategies.sampling import tally
    from router.strategies.self_consistency import majority

    groups: dict[tuple[float, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.get("temperature", 0.7), r["question_id"]), []).append(i)
    hits: dict[float, dict[str, list[bool]]] = {}
    for (t, _), idx in groups.items():
        cands = [SimpleNamespace(index=i, answer=rows[i]["answer"], scores={"reward_model": float(scores[i])})
                 for i in idx]
        votes = tally(cands)
        picks = {"SC@8": majority(cands, votes) if votes else None,
                 "BoN@8 reward_model": select(cands, "reward_model", "rank"),
                 "weighted@8 reward_model": select(cands, "reward_model", "weighted")}
        for name, pick in picks.items():
            hits.setdefault(t, {}).setdefault(name, []).append(bool(pick is not None and rows[pick.index]["correct"]))
    return {str(t): {name: round(sum(h) / len(h), 3) for name, h in by.items()} | {"questions": len(by["SC@8"])}
            for t, by in sorted(hits.items())}


def auc_of(score, y, mask) -> float | None:  # noqa: ANN001
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y[mask], score[mask])), 3) if len(set(y[mask])) > 1 else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generate", action="store_true", help="sample the model to (re)make the data first")
    args = parser.parse_args()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if args.generate or not DATA.exists():
        generate()
    train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
