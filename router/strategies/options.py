"""Checks for a level's ``options`` (the YAML ``options:`` mapping), run when a policy file loads.

A strategy reads its options when a request runs; a typo or a wrong type found only then fails
every request at that level, or quietly changes what it does (``stop_rule: nonsense`` turned early
stopping off). Each strategy declares a check per option it reads (:attr:`Strategy.option_checks`);
the policy loader refuses unknown names and bad values with the level and option named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Check = Callable[[Any], str | None]  # a problem description, or None when the value is good


def integer(low: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be an integer >= {low}, got {value!r}"
        return None

    return check


def number(low: float, high: float = math.inf) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            bound = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
            return f"must be a number {bound}, got {value!r}"
        return None

    return check


def one_of(choices: Callable[[], Iterable[str]] | Iterable[str]) -> Check:
    """One of ``choices`` (a callable is asked at check time: registries fill up on import)."""

    def check(value: Any) -> str | None:
        known = sorted(choices() if callable(choices) else choices)
        return None if value in known else f"must be one of {known}, got {value!r}"

    return check


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def verifier(value: Any) -> str | None:
    from router.verifiers import verifier_names

    return one_of(verifier_names)(value)


def answer_kind(value: Any) -> str | None:
    from typing import get_args

    from router.verifiers.answers import AnswerKind

    return one_of(get_args(AnswerKind))(value)


def problems(checks: Mapping[str, Check], options: Mapping[str, Any]) -> list[str]:
    """``option: problem`` for each unknown or bad option."""
    out = []
    for name, value in options.items():
        if name not in checks:
            out.append(f"{name}: unknown option; this strategy reads {sorted(checks) or 'none'}")
        elif (problem := checks[name](value)) is not None:
            out.append(f"{name}: {problem}")
    return out
