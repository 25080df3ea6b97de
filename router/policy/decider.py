"""One routing decision: experiment arm, difficulty prediction, policy plan, shadow plans.

Everything the request path decides before any model work, and nothing else: no engine, no
transport, no I/O beyond the classifier call. The core owns one and swaps its policies on reload;
the routing benchmark and offline replays drive it directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Protocol

from router.domain import Hints, Routing
from router.errors import PolicyFileError
from router.policy.experiments import Experiment
from router.policy.ladder import Policy, PolicySet, RouteFacts
from router.policy.latency import LatencyEstimates


class DifficultyPredictor(Protocol):
    """What routing needs of a difficulty scorer (router.difficulty.scorer.DifficultyScorer)."""

    levels: tuple[str, ...]

    def predict(self, text: str) -> dict[str, float]: ...


@dataclass
class Decider:
    policies: PolicySet
    scorer: DifficultyPredictor | None = None
    max_samples: int = 64
    accelerated: bool = True
    latency: LatencyEstimates = field(default_factory=LatencyEstimates)

    def __post_init__(self) -> None:
        self.set_policies(self.policies)

    def set_policies(self, policies: PolicySet) -> None:
        """Serve ``policies`` from now on, if every routed policy can be served by this classifier."""
        predicted = set(self.scorer.levels) if self.scorer is not None else set()
        for policy in policies:
            if policy.routed and not predicted & {lv.name for lv in policy.levels}:
                raise PolicyFileError(
                    f"policy '{policy.name}' routes by predicted success, but the difficulty classifier "
                    f"predicts none of its levels (it predicts {sorted(predicted) or 'nothing: none is loaded'})"
                )
        self.policies = policies  # one reference swap: a decision in flight keeps its snapshot

    def decide(self, question: str, hints: Hints, request_id: str = "", remaining_ms: float | None = None) -> Routing:
        """The plan for ``question`` (the last user turn) and the shadow arms' plans.

        The experiment unit is ``hints.unit_id``, else ``request_id``, else a fresh random id.
        ``remaining_ms`` is the time left for the answer, if any.
        """
        policies = self.policies
        policy, experiment, arm = self._policy_for(policies, hints, request_id)
        shadows = [(a, policies.get(a.policy)) for a in experiment.shadow] if experiment is not None else []
        success = None
        if self.scorer is not None and not hints.level and (policy.routed or any(p.routed for _, p in shadows)):
            success = self.scorer.predict(question)
        facts = RouteFacts(success=success, remaining_ms=remaining_ms, latency_ms=self._estimates(policy),
                           accelerated=self.accelerated)
        if experiment is None:
            return Routing(policy.plan(hints, self.max_samples, facts))
        plan = policy.plan(hints, self.max_samples, facts, experiment.name, arm)
        shadow_plans = tuple(
            p.plan(hints, self.max_samples, replace(facts, latency_ms=self._estimates(p)), experiment.name, a.name)
            for a, p in shadows
        )
        return Routing(plan, shadow_plans)

    def _estimates(self, policy: Policy):  # noqa: ANN202
        return lambda level: self.latency.estimate(policy.name, level)

    @staticmethod
    def _policy_for(policies: PolicySet, hints: Hints, request_id: str) -> tuple[Policy, Experiment | None, str]:
        """An explicit policy wins; otherwise the enabled experiment's arm; otherwise the default.

        A forced level opts out of the experiment too: it names a level of ``hints.policy`` (or of
        the default policy), the same for every caller whatever arm its unit would hash to, and a
        forced run is not a sample of any arm's routing.
        """
        if hints.policy or hints.level:
            return policies.get(hints.policy), None, ""
        experiment = policies.active_experiment
        if experiment is None:
            return policies.get(""), None, ""
        arm = experiment.assign(hints.unit_id or request_id or uuid.uuid4().hex)
        return policies.get(arm.policy), experiment, arm.name
