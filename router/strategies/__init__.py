"""Compute strategies: one module per strategy behind :class:`router.strategies.base.Strategy`."""

from router.strategies.base import Strategy, StrategyContext, get_strategy, register, strategy_names
from router.strategies.single import SinglePass

register(SinglePass())

__all__ = ["Strategy", "StrategyContext", "get_strategy", "register", "strategy_names"]
