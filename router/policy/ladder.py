"""Compute ladders and the policies that pick a rung.

For now the only policy is ``fixed``: it always picks its default level (a single greedy pass).
The difficulty classifier, cost-aware rules and experiments arrive with the routing issue; the
shape here is what they plug into: a policy owns a ladder of named levels and returns a
:class:`~router.domain.Plan` that a caller's hints (forced level, budget, sampling overrides)
have bounded. Pure: no I/O, no engine, so it can be replayed offline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from router.domain import Hints, Plan
from router.engine.types import SamplingParams
from router.errors import InvalidArgumentError


@dataclass(frozen=True)
class LevelSpec:
    """One rung of a ladder: a strategy, its sample count and its sampling parameters."""

    name: str
    strategy: str
    samples: int
    sampling: SamplingParams
    description: str = ""
    options: tuple[tuple[str, Any], ...] = ()  # strategy knobs (a tuple keeps the spec hashable)


@dataclass(frozen=True)
class Policy:
    name: str
    levels: tuple[LevelSpec, ...]
    default_level: str
    description: str = ""

    @cached_property
    def version(self) -> str:
        """Content hash: two policies with the same name but other contents get other versions."""
        body = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(body).hexdigest()[:12]

    def level(self, name: str) -> LevelSpec:
        for spec in self.levels:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.levels)
        raise InvalidArgumentError("hints.level", f"unknown level '{name}' for policy '{self.name}'; known: {known}")

    def plan(self, hints: Hints, max_samples: int) -> Plan:
        forced = bool(hints.level)
        spec = self.level(hints.level or self.default_level)
        sampling, capped = _apply_overrides(spec.sampling, hints)
        samples = spec.samples
        if hints.max_samples and hints.max_samples < samples:
            samples, capped = hints.max_samples, True
        if samples > max_samples:
            raise InvalidArgumentError(
                "hints.budget.max_samples",
                f"level '{spec.name}' needs {samples} samples; this server allows {max_samples}",
            )
        return Plan(
            level=spec.name,
            strategy=spec.strategy,
            samples=samples,
            sampling=sampling,
            policy=self.name,
            policy_version=self.version,
            reason="forced by request" if forced else f"policy '{self.name}' default level",
            capped_by_budget=capped,
            options=dict(spec.options),
        )


def _apply_overrides(base: SamplingParams, hints: Hints) -> tuple[SamplingParams, bool]:
    o = hints.sampling
    changes = {k: v for k, v in (
        ("temperature", o.temperature), ("top_p", o.top_p), ("top_k", o.top_k), ("seed", o.seed),
        ("max_new_tokens", o.max_new_tokens),
    ) if v is not None}
    params = replace(base, **changes)
    capped = False
    if hints.max_tokens and hints.max_tokens < params.max_new_tokens:
        params, capped = replace(params, max_new_tokens=hints.max_tokens), True
    try:
        params.validate()
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"hints.sampling.{exc.field}", exc.description) from None
    return params, capped


class PolicySet:
    """The policies a server can apply, by name, and which one is the default."""

    def __init__(self, policies: list[Policy], default: str) -> None:
        self._policies = {p.name: p for p in policies}
        if default not in self._policies:
            raise ValueError(f"default policy '{default}' is not among {sorted(self._policies)}")
        self.default = default

    def get(self, name: str) -> Policy:
        try:
            return self._policies[name or self.default]
        except KeyError:
            known = ", ".join(sorted(self._policies))
            raise InvalidArgumentError("hints.policy", f"unknown policy '{name}'; known: {known}") from None

    def __iter__(self):
        return iter(self._policies.values())


def default_ladder(max_new_tokens: int = 256) -> tuple[LevelSpec, ...]:
    """The compute levels every built-in policy offers, cheapest first."""
    sample = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens, seed=0)
    return (
        LevelSpec("single", "single", 1, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens),
                  "one greedy pass"),
        LevelSpec("escalate", "escalate", 8, sample, "greedy, then vote over up to 8 samples if unsure",
                  (("confidence", "self_likelihood"), ("threshold", 0.6), ("wave", 4))),
        LevelSpec("self_consistency", "self_consistency", 8, sample,
                  "majority vote over up to 8 samples, adaptive stop",
                  (("wave", 4), ("stop_rule", "beta"), ("confidence", 0.95))),
        LevelSpec("best_of_n", "best_of_n", 8, sample, "8 samples ranked by self-likelihood",
                  (("verifier", "self_likelihood"), ("selection", "rank"))),
        LevelSpec("best_of_n_rm", "best_of_n", 8, sample, "8 samples, weighted vote by the outcome reward model",
                  (("verifier", "reward_model"), ("selection", "weighted"))),
        LevelSpec("self_refine", "self_refine", 1, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens),
                  "greedy draft, then up to 2 rounds of critique and revision", (("rounds", 2),)),
        LevelSpec("step_search", "step_search", 4, sample,
                  "beam search over reasoning steps (2 beams x 2 children, 12 expansions)",
                  (("mode", "beam"), ("beam_width", 2), ("branching", 2), ("expansions", 12), ("delimiter", "\n"))),
    )


def default_policies(max_new_tokens: int = 256) -> PolicySet:
    fixed = Policy(name="fixed", levels=default_ladder(max_new_tokens), default_level="single",
                   description="one greedy pass unless a level is forced (until the difficulty classifier lands)")
    return PolicySet([fixed], default="fixed")
