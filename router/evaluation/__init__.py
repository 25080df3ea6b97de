"""Evaluation: question sets with verifiable answers, grading, and `router eval` (eval_cli)."""
