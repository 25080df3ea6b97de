"""Synthetic difficulty labels, so that these tests never depend on the real (slow to make) labels.

Questions come from the generated families (``router.evaluation.datasets``) with their real splits
(``successor`` is an unseen family); whether a level "answered correctly" is drawn from a
probability that depends on the numbers and operator in the text, as the real labels do.
Rows are written as ``LevelResult`` JSON, the format ``router difficulty labels`` produces.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from router.difficulty.train import DifficultyModel, Labels, fit, load_labels
from router.evaluation.datasets import FAMILIES, generated, split_of
from router.evaluation.runner import LevelResult

LEVELS = ("single", "self_consistency", "best_of_n_rm")


def success_probability(text: str, level: str) -> float:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    big = max(numbers, default=0)
    if level == "single":
        return 0.85 if big < 20 else 0.2
    if level == "self_consistency":
        return 0.8 if "*" in text or "larger" in text else 0.35
    return 0.9 if big < 50 else 0.4


def write_synthetic_labels(path: Path, per_family: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for family in FAMILIES:
        for q in generated(family, per_family, seed=seed):
            base = LevelResult(
                id=q.id, family=q.family, source=q.source, seed=q.seed, split=split_of(q), question=q.text,
                expected=q.answer, level="", correct=False, answer="", prompt_tokens=30, completion_tokens=40,
                samples=1, model_calls=1, latency_ms=100.0, truncated=False,
            )
            for level in LEVELS:
                correct = rng.random() < success_probability(q.text, level)
                rows.append(replace(base, level=level, correct=correct, answer=q.answer if correct else "0"))
    path.write_text("".join(r.to_json() + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def synthetic_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_labels(tmp_path_factory.mktemp("labels") / "labels.jsonl")


@pytest.fixture(scope="session")
def synthetic(synthetic_path: Path) -> Labels:
    return load_labels(synthetic_path)


def train_part(labels: Labels, split: str = "train") -> tuple[list[str], object]:
    m = labels.select(split)
    return [t for t, keep in zip(labels.texts, m, strict=True) if keep], labels.y[m]


@pytest.fixture(scope="session")
def synthetic_model(synthetic: Labels) -> DifficultyModel:
    texts, y = train_part(synthetic)
    return fit(texts, y, synthetic.levels)
