"""Verifiers: answer extraction and scorers behind :class:`router.verifiers.base.Verifier`."""

from router.verifiers.base import ScoredItem, Verifier, get_verifier, register, verifier_names
from router.verifiers.reward_model import RewardModel
from router.verifiers.scorers import Agreement, LMJudge, SelfLikelihood

for _verifier in (SelfLikelihood(), Agreement(), LMJudge(), RewardModel()):
    register(_verifier)

__all__ = ["ScoredItem", "Verifier", "get_verifier", "register", "verifier_names"]
