"""Compute strategies: one module per strategy behind :class:`router.strategies.base.Strategy`."""

from router.strategies.base import Strategy, StrategyContext, get_strategy, register, strategy_names
from router.strategies.best_of_n import BestOfN
from router.strategies.escalate import Escalate
from router.strategies.self_consistency import SelfConsistency
from router.strategies.self_refine import SelfRefine
from router.strategies.single import SinglePass
from router.strategies.step_search import StepSearch

for _strategy in (SinglePass(), SelfConsistency(), BestOfN(), Escalate(), SelfRefine(), StepSearch()):
    register(_strategy)

__all__ = ["Strategy", "StrategyContext", "get_strategy", "register", "strategy_names"]
