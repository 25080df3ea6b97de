"""Difficulty labels from real runs: every label level on every question of the label set.

    router difficulty labels [--per-family 30] [--per-task 30] [--seed 2] [--out ...]

Seed 2 keeps these questions apart from the reward model's training questions (seed 0) and the
strategies benchmark (seed 1). Questions run in a seeded shuffled order, so a run stopped early
still covers every family. The file is resumable and is committed with the classifier it trains.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from router.config import Settings
from router.difficulty import LABELS
from router.evaluation.datasets import label_set
from router.evaluation.runner import ProgressLine, run_levels
from router.policy.ladder import Policy, default_ladder

LABEL_LEVELS = ("single", "self_consistency", "best_of_n_rm")
LABEL_MAX_NEW_TOKENS = 160  # SmolLM2's answers here end within ~110 tokens; 160 leaves room


def label_policy() -> Policy:
    """The ladder the labels were made with; the shipped policy reuses these level specs."""
    levels = tuple(lv for lv in default_ladder(LABEL_MAX_NEW_TOKENS) if lv.name in LABEL_LEVELS)
    return Policy(name="labels", levels=levels, default_level="single")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="router difficulty labels", description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=30)
    ap.add_argument("--per-task", type=int, default=30, help="questions per reasoning-gym task")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--levels", default=",".join(LABEL_LEVELS))
    ap.add_argument("--out", type=Path, default=LABELS)
    args = ap.parse_args(argv)
    settings = Settings()
    engine = settings.load_engine()
    policy = label_policy()
    questions = label_set(args.per_family, args.per_task, seed=args.seed)
    random.Random(args.seed).shuffle(questions)
    meta = args.out.with_suffix(".meta.json")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({
        "model": engine.name, "per_family": args.per_family, "per_task": args.per_task, "seed": args.seed,
        "policy_version": policy.version, "levels": {lv.name: lv.__repr__() for lv in policy.levels},
    }, indent=2) + "\n")
    for _ in run_levels(engine, policy, questions, args.levels.split(","), args.out, on_row=ProgressLine()):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
