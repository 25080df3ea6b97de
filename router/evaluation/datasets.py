"""Question sets with verifiable answers: generated families and reasoning-gym tasks.

Generated families are the ones DESIGN.md measured SmolLM2 on (arithmetic, comparison,
counting, successor); each question records its family, seed and canonical answer so that
splits (by family, for unseen-family tests) and grading are reproducible. reasoning-gym tasks
come from the installed package (no network), at their easiest settings.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from router.verifiers.answers import answers_equal, extract_answer

WORDS = ("banana", "strawberry", "mississippi", "committee", "bookkeeper", "assessment", "parallel",
         "engineering", "balloon", "coffee", "letter", "success", "pepper", "address", "tomorrow")


@dataclass(frozen=True)
class Question:
    id: str
    family: str
    text: str
    answer: str  # canonical
    kind: str = "number"
    choices: tuple[str, ...] = ()
    source: str = "generated"
    seed: int = 0

    def grade(self, response: str) -> tuple[str, bool]:
        """(extracted answer or "", correct?) — an abstention is never correct."""
        got = extract_answer(response, self.kind, self.choices) or ""
        return got, bool(got) and answers_equal(got, self.answer)


def _addition(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return f"What is {a} + {b}?", str(a + b), ()


def _subtraction(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    a, b = sorted((rng.randint(2, 99), rng.randint(2, 99)), reverse=True)
    return f"What is {a} - {b}?", str(a - b), ()


def _multiplication(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return f"What is {a} * {b}?", str(a * b), ()


def _comparison(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    a, b = rng.sample(range(10, 100), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b)), (str(a), str(b))


def _letter_count(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word)))
    return f'How many times does the letter "{letter}" appear in the word "{word}"?', str(word.count(letter)), ()


def _successor(rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    n = rng.randint(10, 999)
    return f"What number comes right after {n}?", str(n + 1), ()


FAMILIES: dict[str, Callable[[random.Random], tuple[str, str, tuple[str, ...]]]] = {
    "addition": _addition,
    "subtraction": _subtraction,
    "multiplication": _multiplication,
    "comparison": _comparison,
    "letter_count": _letter_count,
    "successor": _successor,
}


def generated(family: str, n: int, seed: int = 0) -> list[Question]:
    rng = random.Random(f"{family}:{seed}")
    make = FAMILIES[family]
    out = []
    for i in range(n):
        text, answer, choices = make(rng)
        out.append(Question(id=f"{family}-{seed}-{i}", family=family, text=text, answer=answer, choices=choices,
                            seed=seed))
    return out


REASONING_GYM = {  # name -> easiest config we use
    "basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
    "leg_counting": {"min_animals": 1, "max_animals": 2},
    "gcd": {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": 30},
}


def reasoning_gym(name: str, n: int, seed: int = 0) -> list[Question]:
    import reasoning_gym as rg

    ds = rg.create_dataset(name, size=n, seed=seed, **REASONING_GYM.get(name, {}))
    return [
        Question(id=f"rg-{name}-{seed}-{i}", family=f"rg:{name}", text=item["question"], answer=str(item["answer"]),
                 source=f"reasoning-gym:{name}", seed=seed)
        for i, item in enumerate(ds)
    ]


# Families kept out of classifier training entirely, so that its quality on task families it has
# never seen is measured, not assumed (one generated family and one reasoning-gym task).
UNSEEN_FAMILIES = ("successor", "rg:gcd")
TEST_SHARE = 0.3


def split_of(question: Question) -> str:
    """``unseen`` for held-out families; otherwise ``train`` or ``test`` by a stable hash of the id."""
    if question.family in UNSEEN_FAMILIES:
        return "unseen"
    digest = hashlib.sha256(question.id.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < TEST_SHARE else "train"


def label_set(per_family: int, per_task: int, seed: int = 0) -> list[tuple[Question, str]]:
    """The difficulty-label question set: every generated family and reasoning-gym task, with splits."""
    qs = [q for f in FAMILIES for q in generated(f, per_family, seed=seed)]
    qs += [q for name in REASONING_GYM for q in reasoning_gym(name, per_task, seed=seed)]
    return [(q, split_of(q)) for q in qs]
