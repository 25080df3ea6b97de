"""Difficulty labels from real runs: every label level on every question of the label set.

    router difficulty labels [--per-family 30] [--per-task 30] [--seed 2] [--out ...]
    router difficulty labels --redo best_of_n_rm   # after retraining the reward model

Seed 2 keeps these questions apart from the reward model's training questions (seed 0) and the
strategies benchmark (seed 1). Questions run in a seeded shuffled order, so a run stopped early
still covers every family. The file is resumable and is committed with the classifier it trains.
``--redo LEVEL`` drops one level's rows and runs that level again on the questions already in the
file: what a change to a level's parts (the reward model behind ``best_of_n_rm``) needs, without
re-running the others.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from router.config import Settings
from router.difficulty import LABELS
from router.evaluation.datasets import label_set
from router.evaluation.runner import ProgressLine, key_problem, read_results, run_levels, scan_results
from router.policy.ladder import Policy, default_ladder
from router.verifiers.reward_model import committed_sha256

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
    ap.add_argument("--redo", choices=LABEL_LEVELS, help="run this level again on the questions already labelled")
    args = ap.parse_args(argv)
    check_out(args.out)  # before the model loads
    settings = Settings()
    engine = settings.load_engine()
    policy = label_policy()
    questions = label_set(args.per_family, args.per_task, seed=args.seed)
    random.Random(args.seed).shuffle(questions)
    levels = args.levels.split(",")
    if args.redo:
        kept = read_results(args.out) if args.out.exists() else []
        labelled = {r["id"] for r in kept}
        if missing := labelled - {q.id for q, _ in questions}:
            raise SystemExit(f"--redo: {len(missing)} labelled questions (e.g. {sorted(missing)[0]}) are not in the "
                             "question set of these --per-family/--per-task/--seed values; use the ones in "
                             f"{args.out.with_suffix('.meta.json').name}. Nothing was changed.")
        questions = [(q, split) for q, split in questions if q.id in labelled]
        args.out.write_text("".join(json.dumps(r) + "\n" for r in kept if r["level"] != args.redo))
        levels = [args.redo]
    meta = args.out.with_suffix(".meta.json")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({
        "model": engine.name, "per_family": args.per_family, "per_task": args.per_task, "seed": args.seed,
        "policy_version": policy.version, "levels": {lv.name: lv.__repr__() for lv in policy.levels},
        "reward_model_sha256": committed_sha256(),
    }, indent=2) + "\n")
    for _ in run_levels(engine, policy, questions, levels, args.out, on_row=ProgressLine()):
        pass
    return 0


def check_out(out: Path) -> None:
    """Refuse (SystemExit, nothing changed) an ``--out`` that is not a file of label rows: runs append
    to it, and a torn last line would be cut."""
    try:
        scan = scan_results(out, key_problem)
    except (ValueError, OSError) as exc:  # a directory, a device, unreadable
        raise SystemExit(f"router difficulty labels: --out {out}: {exc}") from None
    if scan.bad:
        n, why = scan.bad[0]
        raise SystemExit(f"router difficulty labels: {out} is not a file of label rows ({len(scan.bad)} bad line(s); "
                         f"line {n}: {why}). Nothing was changed: fix it or choose another --out")


if __name__ == "__main__":
    raise SystemExit(main())
