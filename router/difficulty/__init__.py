"""Difficulty: per-level success predictions for a query (labels, training, ONNX scorer)."""
