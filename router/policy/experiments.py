"""A/B experiments: split traffic between policies by a deterministic hash of a unit key.

A unit (a user or session id, falling back to the request id) is hashed with the experiment's
name and salt by sha256 (never Python's ``hash``, which changes per process), so every replica,
every restart and every offline replay puts the same unit in the same arm. Changing the salt
reshuffles units, which is how an experiment is restarted cleanly. Shadow arms are planned and
logged for every request but never executed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    policy: str
    weight: float = 1.0


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    salt: str = ""
    shadow: tuple[Arm, ...] = ()
    enabled: bool = True

    def bucket(self, unit: str) -> float:
        """A uniform number in [0, 1) fixed by (salt, experiment name, unit)."""
        digest = hashlib.sha256(f"{self.salt}\x00{self.name}\x00{unit}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def assign(self, unit: str) -> Arm:
        """The arm of ``unit``: arm i takes a share weight_i / sum(weights) of the units."""
        total = sum(a.weight for a in self.arms)
        point = self.bucket(unit) * total
        edge = 0.0
        for arm in self.arms:
            edge += arm.weight
            if point < edge:
                return arm
        return self.arms[-1]  # float rounding at the very top
