"""Evaluation: question sets with verifiable answers, and grading."""
