"""Routing policies: pure functions of (query facts, hints) -> Plan."""

from router.policy.ladder import LevelSpec, Policy, PolicySet, default_policies

__all__ = ["LevelSpec", "Policy", "PolicySet", "default_policies"]
