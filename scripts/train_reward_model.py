"""Make the reward model's data, train it, export it to ONNX and write its card.

    python scripts/train_reward_model.py --generate   # sample SmolLM2 on the training questions (~10 min)
    python scripts/train_reward_model.py              # train + export from the committed data

Data: for each generated question (families in router/evaluation/datasets.py, seed 0) the
default model draws 8 samples at T=0.7 (64 new tokens) from one prefill; every sample becomes one
row: its features (router/verifiers/reward_model.py) and whether its extracted answer is right.
Evaluation holds out whole families (``comparison`` and ``successor``) to show how it transfers
to question types it never saw, and 25 % of the seen families' questions.
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

from router.verifiers.reward_model import ARTIFACTS, FEATURES, all_features  # noqa: E402

DATA = ARTIFACTS / "reward_data.jsonl"
UNSEEN = ("comparison", "successor")
PER_FAMILY = 25
SAMPLES = 8


def generate() -> None:
    from router.config import Settings
    from router.domain import Candidate
    from router.engine import Engine, SamplingParams
    from router.evaluation.datasets import FAMILIES, generated
    from router.strategies.sampling import tally
    from router.verifiers import ScoredItem

    engine = Engine.load(Settings().model_dir())
    rows, start = [], time.time()
    for family in FAMILIES:
        for q in generated(family, PER_FAMILY, seed=0):
            comps = engine.generate(q.text, SamplingParams(temperature=0.7, max_new_tokens=64, seed=0), n=SAMPLES)
            graded = [q.grade(c.text) for c in comps]
            cands = [Candidate(c, answer=g[0]) for c, g in zip(comps, graded, strict=True)]
            votes = tally(cands)
            for cand, (_, correct) in zip(cands, graded, strict=True):
                item = ScoredItem(q.text, cand.completion, cand.answer, votes, len(cands))
                rows.append({"question_id": q.id, "family": family, "answer": cand.answer, "truth": q.answer,
                             "correct": correct, "features": all_features(item)})
        print(f"{family}: done ({time.time() - start:.0f} s)", flush=True)
    DATA.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {DATA.relative_to(ROOT)}")


def train() -> None:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from router.engine.manifest import sha256_file

    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    x = np.array([[r["features"][f] for f in FEATURES] for r in rows], dtype=np.float32)
    y = np.array([r["correct"] for r in rows], dtype=np.int64)
    fam = np.array([r["family"] for r in rows])
    qid = np.array([r["question_id"] for r in rows])
    held_q = np.array([int(q.rsplit("-", 1)[1]) % 4 == 0 for q in qid])
    unseen = np.isin(fam, UNSEEN)
    train_mask = ~unseen & ~held_q

    def fit(mask):  # noqa: ANN001, ANN202
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0)).fit(x[mask], y[mask])

    def auc(model, mask) -> float | None:  # noqa: ANN001
        return auc_of(model.predict_proba(x)[:, 1], y, mask)

    probe = fit(train_mask)
    vote_only = {name: auc_of(x[:, FEATURES.index("vote_share")], y, m) for name, m in
                 (("seen_heldout", ~unseen & held_q), ("unseen_families", unseen))}
    seen = sorted(set(fam[~unseen]))
    lofo = [auc_of(fit(~unseen & (fam != f)).predict_proba(x)[:, 1], y, fam == f) for f in seen]
    metrics = {
        "rows": int(len(y)), "positive_rate": round(float(y.mean()), 3),
        "auc_seen_families_heldout_questions": auc(probe, ~unseen & held_q),
        "auc_unseen_families": auc(probe, unseen),
        "auc_vote_share_alone": vote_only,
        "auc_leave_one_seen_family_out": dict(zip(seen, lofo, strict=True)),
    }
    final = fit(np.ones(len(y), dtype=bool))
    onx = to_onnx(final, x[:1], options={id(final.steps[-1][1]): {"zipmap": False}}, target_opset=18)
    out = ARTIFACTS / "reward_model.onnx"
    out.write_bytes(onx.SerializeToString())
    card = {
        "name": "reward_model", "features": list(FEATURES), "sha256": sha256_file(out),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "data": DATA.name,
        "model": "StandardScaler + LogisticRegression(C=1.0), fit on all rows after evaluation",
        "evaluation": f"fit on seen families minus 25 % of their questions; unseen families: {list(UNSEEN)}",
        "metrics": metrics,
    }
    (ARTIFACTS / "reward_model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


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
