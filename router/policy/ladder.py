"""Compute ladders and the policies that pick a rung.

A policy owns a ladder of named levels (strategy + parameters + cost estimate) and a rule that
turns the difficulty classifier's per-level success predictions into one level:

- ``fixed``: always the default level (no classifier needed);
- ``threshold``: the cheapest level whose predicted success clears ``target``; when none does,
  the level with the highest predicted success (the cheapest of equals);
- ``utility``: the level maximising ``p(success) - lambda * cost_tokens / 1000``. ``lambda = 0``
  buys the most likely level whatever it costs; ``lambda = inf`` always takes the cheapest.

Only levels the classifier predicts can be chosen by a rule; every level can be forced. The
caller's hints bound the choice before the rule applies: a sample cap and a token budget drop
levels that would exceed them, a deadline drops levels whose observed latency would not fit, and
without an accelerator ``cpu_max_level`` caps the ladder (the answer is then marked degraded when
the cap changed the choice). Pure: no I/O, no engine, so decisions can be replayed offline.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

from router.domain import Hints, Plan, SamplingOverrides
from router.engine.types import SamplingParams
from router.errors import CapacityError, InvalidArgumentError
from router.policy.experiments import Experiment

_NO_OVERRIDES = SamplingOverrides()


@dataclass(frozen=True)
class LevelSpec:
    """One rung of a ladder: a strategy, its sample count, sampling parameters and cost priors."""

    name: str
    strategy: str
    samples: int
    sampling: SamplingParams
    description: str = ""
    options: tuple[tuple[str, Any], ...] = ()  # strategy knobs (a tuple keeps the spec hashable)
    cost_tokens: float = 0.0  # expected completion tokens of one request at this level
    latency_ms: float = 0.0  # prior for the running latency estimate


@dataclass(frozen=True)
class Rule:
    kind: str = "fixed"
    target: float = 0.5  # threshold rule
    lam: float = 0.0  # utility rule, per 1000 tokens

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"threshold(target={self.target:g})"
        if self.kind == "utility":
            return f"utility(lambda={self.lam:g}/1k tokens)"
        return "fixed"


@dataclass(frozen=True)
class RouteFacts:
    """What the policy is told about one request besides the hints (all optional)."""

    success: Mapping[str, float] | None = None  # level -> predicted P(correct)
    remaining_ms: float | None = None  # time left before the deadline, at decision time
    latency_ms: Callable[[LevelSpec], float] | None = None  # running latency estimate per level
    accelerated: bool = True  # False on CPU: cpu_max_level applies


def choose(levels: Sequence[LevelSpec], success: Mapping[str, float], rule: Rule) -> tuple[LevelSpec, str] | None:
    """The rule's pick among ``levels`` (all predicted), with the reason in words; None if empty."""
    ordered = sorted(levels, key=lambda lv: lv.cost_tokens)  # stable: ladder order among equal costs
    if not ordered:
        return None
    if rule.kind == "threshold":
        for lv in ordered:
            if success[lv.name] >= rule.target:
                return lv, f"cheapest level predicted to reach {rule.target:g}: p={success[lv.name]:.2f}"
        best = max(ordered, key=lambda lv: success[lv.name])  # max keeps the first (cheapest) of equals
        return best, f"no level predicted to reach {rule.target:g}; most likely is p={success[best.name]:.2f}"
    if math.isinf(rule.lam):
        return ordered[0], "lambda=inf: cheapest level"
    best = max(ordered, key=lambda lv: success[lv.name] - rule.lam * lv.cost_tokens / 1000)
    value = success[best.name] - rule.lam * best.cost_tokens / 1000
    p = success[best.name]
    return best, f"best p - {rule.lam:g}*cost/1k = {value:.3f} (p={p:.2f}, ~{best.cost_tokens:.0f} tokens)"


@dataclass(frozen=True)
class Policy:
    name: str
    levels: tuple[LevelSpec, ...]
    default_level: str
    description: str = ""
    rule: Rule = field(default_factory=Rule)
    cpu_max_level: str = ""  # without an accelerator, levels above this one are not chosen

    @cached_property
    def version(self) -> str:
        """Content hash: two policies with the same name but other contents get other versions."""
        body = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(body).hexdigest()[:12]

    @property
    def routed(self) -> bool:
        return self.rule.kind != "fixed"

    def level(self, name: str) -> LevelSpec:
        for spec in self.levels:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.levels)
        raise InvalidArgumentError("hints.level", f"unknown level '{name}' for policy '{self.name}'; known: {known}")

    def plan(
        self, hints: Hints, max_samples: int, facts: RouteFacts = RouteFacts(), experiment: str = "", arm: str = ""
    ) -> Plan:
        success = dict(facts.success or {})
        spec, reason, capped, degraded = self._pick(hints, facts, success)
        sampling, capped_tokens = _apply_overrides(spec.sampling, hints)
        samples = spec.samples
        if hints.max_samples and hints.max_samples < samples:
            samples, capped = hints.max_samples, True
        if samples > max_samples:
            raise CapacityError(
                f"level '{spec.name}' takes {samples} samples and this server runs at most {max_samples} per request "
                f"(engine.max_samples): cap it with hints.budget.max_samples <= {max_samples}"
            )
        predicted = [lv for lv in self.levels if lv.name in success]
        cheapest = min(predicted, key=lambda lv: lv.cost_tokens) if predicted else None
        return Plan(
            level=spec.name,
            strategy=spec.strategy,
            samples=samples,
            sampling=sampling,
            policy=self.name,
            policy_version=self.version,
            reason=reason,
            difficulty=None if cheapest is None else 1.0 - success[cheapest.name],
            capped_by_budget=capped or capped_tokens,
            options=dict(spec.options),
            predicted=success,
            estimated_tokens=spec.cost_tokens,
            estimated_latency_ms=facts.latency_ms(spec) if facts.latency_ms else spec.latency_ms,
            degraded=degraded,
            experiment=experiment,
            arm=arm,
        )

    def _pick(self, hints: Hints, facts: RouteFacts, success: dict[str, float]) -> tuple[LevelSpec, str, bool, bool]:
        """(level, reason, capped by the budget, degraded by the CPU cap)."""
        if hints.level:
            return self.level(hints.level), "forced by request", False, False
        if not self.routed or not success:
            why = "" if not self.routed else " (no difficulty prediction)"
            return self.level(self.default_level), f"policy '{self.name}' default level{why}", False, False
        predicted = [lv for lv in self.levels if lv.name in success]
        budget = [lv for lv in predicted if _within_budget(lv, hints)]
        cpu = budget if facts.accelerated else self._below_cpu_cap(budget)
        fits = [lv for lv in cpu if _fits_deadline(lv, facts)] if facts.remaining_ms is not None else cpu
        picked = choose(fits, success, self.rule)
        if picked is None:  # nothing fits: the cheapest allowed level runs and truncates if it must
            pool = cpu or budget or predicted
            spec = min(pool, key=lambda lv: lv.cost_tokens)
            limit = "the budget" if not budget else "the CPU cap" if not cpu else "the deadline"
            picked = spec, f"no level fits {limit}; running the cheapest allowed, {spec.name}, truncated if need be"
        spec, reason = picked
        # What the choice would have been without the budget / the CPU cap (only when they removed a level).
        unbounded = choose(predicted, success, self.rule) if len(budget) < len(predicted) else None
        capped = unbounded is not None and unbounded[0] not in budget
        uncapped_cpu = None
        if len(cpu) < len(budget):
            uncapped_cpu = choose([lv for lv in budget if _fits_deadline(lv, facts)], success, self.rule)
        degraded = uncapped_cpu is not None and uncapped_cpu[0] is not spec
        if capped and unbounded[0] is not spec:
            reason += "; budget excluded " + unbounded[0].name
        if degraded:
            reason += f"; CPU cap '{self.cpu_max_level}' excluded {uncapped_cpu[0].name}"
        return spec, f"{self.rule.describe()}: {reason}", capped, degraded

    def _below_cpu_cap(self, levels: list[LevelSpec]) -> list[LevelSpec]:
        if not self.cpu_max_level:
            return levels
        top = [lv.name for lv in self.levels].index(self.cpu_max_level)
        allowed = {lv.name for lv in self.levels[: top + 1]}
        return [lv for lv in levels if lv.name in allowed]


def _within_budget(level: LevelSpec, hints: Hints) -> bool:
    if hints.max_samples and level.samples > hints.max_samples:
        return False
    return not (hints.max_tokens and level.cost_tokens > hints.max_tokens)


def _fits_deadline(level: LevelSpec, facts: RouteFacts) -> bool:
    if facts.remaining_ms is None:
        return True
    estimate = facts.latency_ms(level) if facts.latency_ms else level.latency_ms
    return estimate <= facts.remaining_ms


def _apply_overrides(base: SamplingParams, hints: Hints) -> tuple[SamplingParams, bool]:
    o = hints.sampling
    if o == _NO_OVERRIDES and not hints.max_tokens:
        return base, False  # the level's own parameters, validated when the policy was loaded
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
    """The policies a server can apply, by name, the default one, and the experiments over them."""

    def __init__(
        self, policies: list[Policy], default: str, experiments: Sequence[Experiment] = (), source: str = "built-in"
    ) -> None:
        self._policies = {p.name: p for p in policies}
        if default not in self._policies:
            raise ValueError(f"default policy '{default}' is not among {sorted(self._policies)}")
        self.default = default
        self.experiments = tuple(experiments)
        self.source = source

    def get(self, name: str) -> Policy:
        try:
            return self._policies[name or self.default]
        except KeyError:
            known = ", ".join(sorted(self._policies))
            raise InvalidArgumentError("hints.policy", f"unknown policy '{name}'; known: {known}") from None

    @property
    def active_experiment(self) -> Experiment | None:
        return next((e for e in self.experiments if e.enabled), None)

    def __iter__(self):
        return iter(self._policies.values())


# The sampled levels' temperature, one for the whole ladder. bench/results/strategies.md (48
# questions, paired pools): at 0.3 a vote over 4 samples was right on 0.292 against greedy's 0.167,
# at 0.7 a vote over 8 on 0.208; SmolLM2-135M's hotter samples scatter more than they explore. The
# reward-model weighted vote (reward model v2) did 0.312 at 0.3 and 0.271 at 0.7.
SAMPLE_TEMPERATURE = 0.3


def default_ladder(max_new_tokens: int = 256) -> tuple[LevelSpec, ...]:
    """The compute levels every built-in policy offers, cheapest first."""
    sample = SamplingParams(temperature=SAMPLE_TEMPERATURE, top_p=0.95, max_new_tokens=max_new_tokens, seed=0)
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
    """A single ``fixed`` policy over the whole ladder: what runs when no policy file is given."""
    fixed = Policy(name="fixed", levels=default_ladder(max_new_tokens), default_level="single",
                   description="one greedy pass unless a level is forced")
    return PolicySet([fixed], default="fixed")
