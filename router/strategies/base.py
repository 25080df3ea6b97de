"""The strategy extension point: how a compute level turns a plan into an answer.

A strategy knows the engine (and, from the next issue on, verifiers); it knows nothing of gRPC
or policies. It must be *anytime*: when the deadline nears, the budget runs out or the request
is cancelled, it returns the best answer so far with the matching flag instead of failing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from router.domain import Candidate, Outcome, Plan, Query
from router.engine import CancelToken, Engine
from router.errors import InvalidArgumentError


@dataclass
class StrategyContext:
    """What a strategy may use and whom it reports progress to."""

    engine: Engine
    cancel: CancelToken
    deadline: float | None = None  # absolute time.monotonic()
    on_text: Callable[[str, int], None] | None = None  # (new text of a single pass, tokens so far)
    on_sample: Callable[[Candidate], None] | None = None  # a finished sample of a multi-sample level


class Strategy(ABC):
    """Runs one compute level."""

    name: ClassVar[str]
    #: The level options this strategy reads, each with its check (router/strategies/options.py).
    option_checks: ClassVar[Mapping[str, Callable[[Any], str | None]]] = {}

    @abstractmethod
    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        """Answer ``query`` as ``plan`` says, within its budget, deadline and cancellation."""

    def check_options(self, options: Mapping[str, Any]) -> list[str]:
        """``option: problem`` for each option of a level this strategy would not read as meant
        (unknown name, wrong type or value); the policy loader refuses the file with them."""
        from router.strategies.options import problems

        return problems(self.option_checks, options)


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> None:
    _REGISTRY[strategy.name] = strategy


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgumentError("strategy", f"unknown strategy '{name}'; known: {strategy_names()}") from None


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)
