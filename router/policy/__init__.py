"""Routing policies: pure functions of (predictions, hints, facts) -> Plan; experiments over them."""

from router.policy.experiments import Arm, Experiment
from router.policy.ladder import LevelSpec, Policy, PolicySet, RouteFacts, Rule, choose, default_policies
from router.policy.latency import LatencyEstimates
from router.policy.loader import DEFAULT_POLICY_FILE, load_policies, parse_policies

__all__ = [
    "DEFAULT_POLICY_FILE", "Arm", "Experiment", "LatencyEstimates", "LevelSpec", "Policy", "PolicySet", "RouteFacts",
    "Rule", "choose", "default_policies", "load_policies", "parse_policies",
]
