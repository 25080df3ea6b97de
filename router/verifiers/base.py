"""The verifier extension point: how confident are we that a candidate answer is right?

A verifier scores candidates in [0, 1] (higher = more likely correct). It sees the question, the
candidate (text, tokens, per-token logprobs), its extracted final answer ("" = abstention) and
how all candidates voted, so agreement-style and learned verifiers share one interface. Scoring
takes a batch so a verifier that runs the model (an LM judge) can batch it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from router.engine import Completion, Engine
from router.errors import InvalidArgumentError


@dataclass(frozen=True)
class ScoredItem:
    """One candidate as a verifier sees it."""

    question: str
    completion: Completion
    answer: str  # extracted final answer, "" when none could be parsed
    votes: Mapping[str, int] = field(default_factory=dict)  # answer -> count among all candidates
    total: int = 1  # number of candidates, abstentions included


class Verifier(ABC):
    """Scores candidates in [0, 1]."""

    name: ClassVar[str]

    @abstractmethod
    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        """One score in [0, 1] per item, in order."""


_REGISTRY: dict[str, Verifier] = {}


def register(verifier: Verifier) -> None:
    _REGISTRY[verifier.name] = verifier


def get_verifier(name: str) -> Verifier:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgumentError("verifier", f"unknown verifier '{name}'; known: {verifier_names()}") from None


def verifier_names() -> list[str]:
    return sorted(_REGISTRY)
