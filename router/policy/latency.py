"""Running latency estimates per (policy, level), for deadline-aware decisions.

An exponentially weighted mean of observed generation time, started from the level's prior in
the policy file. A mean rather than a high quantile: the strategies are anytime (they return the
best answer so far at the deadline), so an occasional overrun costs quality, not an error.
"""

from __future__ import annotations

import threading

from router.policy.ladder import LevelSpec


class LatencyEstimates:
    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self._ms: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def estimate(self, policy: str, level: LevelSpec) -> float:
        return self._ms.get((policy, level.name), level.latency_ms)

    def observe(self, policy: str, level: str, ms: float, prior: float = 0.0) -> None:
        """Fold one observed generation time in; ``prior`` starts the mean if this is the first."""
        key = (policy, level)
        with self._lock:
            old = self._ms.get(key, prior if prior > 0 else ms)
            self._ms[key] = old + self.alpha * (ms - old)
