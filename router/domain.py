"""The request path's data: what was asked, what was decided, what it cost.

Plain dataclasses shared by the core, the transport, the store, metrics and offline tools, so that
a decision is data everywhere (DESIGN.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.engine.types import ChatMessages, Completion, Prompt, SamplingParams


@dataclass(frozen=True)
class Query:
    """Exactly one of ``text`` and ``messages``."""

    text: str = ""
    messages: ChatMessages = ()

    @property
    def prompt(self) -> Prompt:
        return self.text if self.text else list(self.messages)

    @property
    def question(self) -> str:
        """The last user turn: what classifiers, verifiers and judges are shown as the question."""
        if self.text:
            return self.text
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""


@dataclass(frozen=True)
class SamplingOverrides:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class Hints:
    """The caller's say in the decision; zero budgets mean "no cap"."""

    unit_id: str = ""
    policy: str = ""
    level: str = ""
    max_tokens: int = 0
    max_samples: int = 0
    deadline_ms: int = 0  # time budget for the answer; the transport's deadline applies too
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)


@dataclass(frozen=True)
class Plan:
    """The decision: which level runs, with which parameters, and why."""

    level: str
    strategy: str
    samples: int
    sampling: SamplingParams
    policy: str
    policy_version: str
    reason: str
    difficulty: float | None = None
    experiment: str = ""
    arm: str = ""
    capped_by_budget: bool = False  # the caller's budget lowered max_new_tokens or samples
    options: Mapping[str, Any] = field(default_factory=dict)  # strategy knobs, e.g. {"verifier": "..."}
    predicted: Mapping[str, float] = field(default_factory=dict)  # level -> predicted P(correct)
    estimated_tokens: float = 0.0
    estimated_latency_ms: float = 0.0
    degraded: bool = False  # a cap for running without an accelerator changed the choice

    def parameters(self) -> dict[str, str]:
        s = self.sampling
        out = {"temperature": str(s.temperature), "top_p": str(s.top_p), "top_k": str(s.top_k),
               "max_new_tokens": str(s.max_new_tokens)}
        if s.seed is not None:
            out["seed"] = str(s.seed)
        out.update({k: str(v) for k, v in self.options.items()})
        return out


@dataclass(frozen=True)
class Routing:
    """A request's decision: the plan that runs, and the shadow arms' plans that are only logged."""

    plan: Plan
    shadows: tuple[Plan, ...] = ()


@dataclass
class Candidate:
    completion: Completion
    answer: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    chosen: bool = False


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    samples: int = 0
    model_calls: int = 0


@dataclass
class Timings:
    queue_ms: float = 0.0
    classify_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class Flags:
    degraded: bool = False
    truncated_by_deadline: bool = False
    truncated_by_budget: bool = False


@dataclass
class Outcome:
    """What a strategy produced for a plan (filled in by the core with timings and ids)."""

    text: str
    answer: str
    candidates: list[Candidate]
    votes: dict[str, int]
    usage: Usage
    flags: Flags
    timings: Timings = field(default_factory=Timings)
    request_id: str = ""
    model: str = ""
