"""Difficulty: per-level success predictions for a query (labels, training, ONNX scorer)."""

from pathlib import Path

LABELS = Path(__file__).resolve().parent / "data" / "labels.jsonl"  # made by labels.py, read by train.py
