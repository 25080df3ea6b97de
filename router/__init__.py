"""Adaptive-compute router: decides, query by query, how hard a language model should think."""

__version__ = "0.1.0"
